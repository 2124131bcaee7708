"""The checksum of a transfer's bytes, sent after them in an HTTP trailer, both ways.

Knitfab's: ``x-checksum-md5``, the hex MD5 of the bytes as sent (the tar.gz stream). Whoever
receives them computes the same and compares: a server refuses the upload (400 ``hash is not
match.``), ``knit`` warns that the Data it saved may be corrupted. With no trailer, nothing is
checked.

Between our own ``knit`` and server the same trailer carries SHA-256 instead, in RFC 9530's
``Content-Digest`` field (``sha-256=:<base64>:``). The reason is speed: both ends hash every
byte, and MD5 runs at ~560 MiB/s on one core here against ~1,300 MiB/s for SHA-256 (OpenSSL uses
the SHA extensions of x86 and ARM CPUs). On a 1 GiB push MD5 alone was ~3.7 s of the ~5.7 s of
CPU the two ends spent. Without those extensions SHA-256 is slower than MD5, so each end offers
or asks for it only when its CPU has them (``sha256_is_fast``). It is negotiated, so Knitfab's
clients and servers see MD5 unchanged:

* a push: our server lists ``sha-256`` under ``digests`` at ``/api/x/formats``, and ``knit``
  then announces ``Trailer: Content-Digest`` (a server hashes what the request announces);
* a pull: ``knit`` asks with ``Want-Content-Digest: sha-256=1``; our server answers with
  ``Trailer: Content-Digest`` (a Knitfab server ignores the question: ``x-checksum-md5``), and
  ``knit`` hashes what the response announces.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import os
import re

WANT = "sha-256=1"  # the Want-Content-Digest of a pull
_HEX_MD5 = re.compile(r"[0-9a-fA-F]{32}")
_MEMBER = re.compile(r"\s*([a-z0-9_\-.*]+)\s*=\s*:([A-Za-z0-9+/]*={0,2}):\s*")
_WEIGHT = re.compile(r"\s*([a-z0-9_\-.*]+)\s*=\s*([0-9]{1,2})\s*")


class Checksum:
    """One kind of checksum trailer: its hashlib ``algorithm``, its ``field``'s name, a ``label``."""

    algorithm = field = label = ""

    def new(self):
        """A fresh hashlib object."""
        return hashlib.new(self.algorithm)

    def value(self, hexdigest: str) -> str:
        """The trailer's value for a digest."""
        raise NotImplementedError

    def claimed(self, value: str) -> str:
        """The hex digest a trailer's value claims; ``ValueError`` (in words) when it claims none."""
        raise NotImplementedError


class _Md5(Checksum):
    algorithm, field, label = "md5", "x-checksum-md5", "MD5"

    def value(self, hexdigest: str) -> str:
        return hexdigest

    def claimed(self, value: str) -> str:
        if not _HEX_MD5.fullmatch(value.strip()):
            raise ValueError("the x-checksum-md5 trailer is not an MD5 (32 hexadecimal digits)")
        return value.strip().lower()


class _Sha256(Checksum):
    algorithm, field, label = "sha256", "content-digest", "SHA-256"

    def value(self, hexdigest: str) -> str:
        return f"sha-256=:{binascii.b2a_base64(bytes.fromhex(hexdigest), newline=False).decode()}:"

    def claimed(self, value: str) -> str:
        members = dict(m.groups() for m in map(_MEMBER.fullmatch, value.split(",")) if m)
        raw = _base64(members.get("sha-256"))
        if raw is None or len(raw) != 32:
            raise ValueError("the Content-Digest field has no sha-256 digest (sha-256=:<base64 of 32 bytes>:)")
        return raw.hex()


def _base64(text: str | None) -> bytes | None:
    try:
        return None if text is None else binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return None


MD5, SHA256 = _Md5(), _Sha256()


@functools.cache
def sha256_is_fast() -> bool:
    """Whether this CPU computes SHA-256 in hardware (x86's SHA extensions, ARMv8's SHA2): there
    it is over twice as fast as MD5, elsewhere slower."""
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
    except OSError:
        cpuinfo = None
    return sha_instructions(cpuinfo, os.uname().machine)


def sha_instructions(cpuinfo: str | None, machine: str) -> bool:
    """From Linux's ``/proc/cpuinfo`` (None elsewhere: then only ARMv8, Apple's included)."""
    if cpuinfo is None:
        return machine.lower() in ("arm64", "aarch64")
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return not {"sha_ni", "sha2"}.isdisjoint(value.split())
    return False


def server_digests() -> list[str]:
    """What our server lists under ``digests`` at ``/api/x/formats``."""
    return ["sha-256", "md5"] if sha256_is_fast() else ["md5"]


def want() -> dict[str, str]:
    """The ``Want-Content-Digest`` header of a pull (none where SHA-256 is slow here)."""
    return {"Want-Content-Digest": WANT} if sha256_is_fast() else {}


def announced(trailer: str | None, header: str | None = None) -> Checksum:
    """The checksum a message announces (its ``Trailer`` header, or a ``Content-Digest`` header
    on the message itself): SHA-256 if it names ``Content-Digest``, else Knitfab's MD5."""
    names = {n.strip().lower() for n in (trailer or "").split(",")}
    return SHA256 if SHA256.field in names or header is not None else MD5


def wanted(header: str | None) -> Checksum:
    """The checksum to answer a download's ``Want-Content-Digest`` with: SHA-256 if it is asked
    with a weight above 0 (and fast here), else Knitfab's MD5."""
    weights = dict(m.groups() for m in map(_WEIGHT.fullmatch, (header or "").split(",")) if m)
    return SHA256 if int(weights.get("sha-256", "0")) > 0 and sha256_is_fast() else MD5


def offered(formats: object) -> Checksum:
    """The checksum to push with, from a server's ``/api/x/formats`` (None: a Knitfab server):
    SHA-256 if it lists it (and it is fast here), else MD5."""
    listed = formats.get("digests") if isinstance(formats, dict) else None
    return SHA256 if isinstance(listed, list) and "sha-256" in listed and sha256_is_fast() else MD5
