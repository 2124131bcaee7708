"""Where ``knit`` finds its server and its project settings (spec §7.1, §7.2).

* The *profile store* (``~/.knit/profile``, mode 0600) maps profile names to
  ``{apiRoot, cert: {ca}, token}``. ``knit init`` adds the handout (``knitprofile``) to it.
* The profile in use is ``--profile``, else the first line of the nearest ``.knitprofile``
  found walking up from the current directory, else the absolute path of that directory.
* ``knitenv`` (``--env``, else the nearest ``knitenv`` walking up, else ``./knitenv``) gives the
  tags ``data push`` adds and the resources ``plan template`` proposes. Missing means empty.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from .tagtext import split_tag

DEFAULT_STORE = Path("~/.knit/profile")


class ProfileError(Exception):
    """A profile or knitenv that cannot be used; the message says what to do."""


class _Record:
    """Equality and repr by fields, as a dataclass has (dataclasses imports inspect: 10+ ms of
    every ``knit`` command's start-up)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, f) == getattr(other, f) for f in self.__slots__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{f}={getattr(self, f)!r}' for f in self.__slots__)})"


class Profile(_Record):
    __slots__ = ("api_root", "ca", "token")

    def __init__(self, api_root: str, ca: bytes | None = None, token: str | None = None):
        self.api_root = api_root
        self.ca = ca  # PEM of the CA to trust besides the system's
        self.token = token

    def to_yaml(self) -> dict:
        import base64

        out: dict = {"apiRoot": self.api_root, "cert": {"ca": base64.b64encode(self.ca).decode()} if self.ca else {}}
        if self.token:
            out["token"] = self.token
        return out


class KnitEnv(_Record):
    __slots__ = ("tags", "resources")

    def __init__(self, tags: list[str] | None = None, resources: dict[str, str] | None = None):
        self.tags = [] if tags is None else tags
        self.resources = {} if resources is None else resources


def parse_profile(doc: object, where: str) -> Profile:
    """Validate a profile body: ``apiRoot`` an absolute URL, ``cert.ca`` base64 of a PEM block."""
    if not isinstance(doc, dict) or not isinstance(doc.get("apiRoot"), str):
        raise ProfileError(f"{where}: not a knitprofile (it needs apiRoot: https://host:port/api)")
    url = urlsplit(doc["apiRoot"])
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ProfileError(f"{where}: apiRoot must be an absolute http(s) URL, not {doc['apiRoot']!r}")
    cert = doc.get("cert") or {}
    ca = cert.get("ca") if isinstance(cert, dict) else None
    return Profile(doc["apiRoot"].rstrip("/"), _pem(ca, where) if ca else None, doc.get("token") or None)


def _pem(ca: object, where: str) -> bytes:
    import base64  # here: a profile without a CA (plain http) does not need it
    import binascii

    try:
        pem = base64.b64decode(str(ca), validate=True)
    except (binascii.Error, ValueError):
        raise ProfileError(f"{where}: cert.ca is not base64") from None
    if b"-----BEGIN" not in pem:
        raise ProfileError(f"{where}: cert.ca is not a PEM certificate")
    return pem


def read_knitprofile(path: Path) -> Profile:
    import yaml  # here, not at the top: `knit version` never reads YAML

    try:
        return parse_profile(yaml.safe_load(path.read_text()), str(path))
    except OSError as e:
        raise ProfileError(f"cannot read knitprofile {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: not YAML: {e}") from None


def store_path(given: str | None) -> Path:
    return Path(os.path.expanduser(given or str(DEFAULT_STORE)))


def default_name(cwd: Path | None = None) -> str:
    """First line of the nearest ``.knitprofile`` upward, else the absolute current directory."""
    here = (cwd or Path.cwd()).resolve()
    marker = _upward(here, ".knitprofile")
    if marker is not None:
        first = marker.read_text().splitlines()[:1]
        if first and first[0].strip():
            return first[0].strip()
    return str(here)


def load_store(path: Path) -> dict[str, dict]:
    """The profiles of the store; it is YAML (as Knitfab's knit writes it) or JSON, the YAML
    ``knit init`` writes because it is read without importing yaml (start-up < 100 ms)."""
    broken = f"the knitprofile store ({path}) is broken"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    if text.lstrip().startswith("{"):
        import json

        try:
            doc = json.loads(text)
        except ValueError:
            pass  # YAML's flow style, not JSON
        else:
            if not isinstance(doc, dict):
                raise ProfileError(f"{broken}: not a mapping")
            return doc
    return _mapping(path, broken)


def load_profile(name: str | None = None, store: str | None = None, cwd: Path | None = None) -> tuple[str, Profile]:
    path = store_path(store)
    name = name or default_name(cwd)
    if not path.exists():
        raise ProfileError(
            f"knitprofile store ({path}) is not found. Please try `knit init` first. Ask your admin to get knitprofile"
        )
    profiles = load_store(path)
    if name not in profiles:
        raise ProfileError(f"profile '{name}' not found in the profile store ({path})")
    return name, parse_profile(profiles[name], f"profile '{name}' in {path}")


def save_profile(store: Path, name: str, profile: Profile) -> None:
    """Add or replace a profile; the store stays 0600 in a 0700 directory, and a ``.backup``
    copy of the previous store exists while the new one is written."""
    store.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    profiles = load_store(store)
    profiles[name] = profile.to_yaml()
    backup = store.with_name(store.name + ".backup")
    if store.exists():
        backup.write_bytes(store.read_bytes())
        backup.chmod(0o600)
    tmp = store.with_name(store.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    import json

    with os.fdopen(fd, "w") as f:
        json.dump(profiles, f, indent=2)  # YAML too (JSON is), but read without importing yaml
        f.write("\n")
    os.replace(tmp, store)
    store.chmod(0o600)
    backup.unlink(missing_ok=True)


def write_marker(directory: Path, name: str) -> Path:
    """``.knitprofile`` naming the profile of this project directory."""
    marker = directory / ".knitprofile"
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(name)
    return marker


def env_path(given: str | None, cwd: Path | None = None) -> Path:
    if given:
        return Path(os.path.expanduser(given))
    here = (cwd or Path.cwd()).resolve()
    return _upward(here, "knitenv") or here / "knitenv"


def load_env(path: Path) -> KnitEnv:
    doc = _mapping(path, f"{path}: knitenv must be a YAML mapping with tag and resource")
    tags = [str(t) for t in doc.get("tag") or []]
    bad = [t for t in tags if split_tag(t) is None]
    if bad:
        raise ProfileError(f"{path}: tags must be KEY:VALUE: {', '.join(bad)}")
    resources = {str(k): str(v) for k, v in (doc.get("resource") or {}).items()}
    return KnitEnv(tags, resources)


def _mapping(path: Path, broken: str) -> dict:
    """A YAML mapping from ``path``; empty when the file does not exist."""
    if not path.exists():
        return {}
    import yaml

    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ProfileError(f"{broken}: {e}") from None
    if not isinstance(doc, dict):
        raise ProfileError(f"{broken}: not a mapping")
    return doc


def _upward(start: Path, name: str) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / name).is_file():
            return folder / name
    return None
