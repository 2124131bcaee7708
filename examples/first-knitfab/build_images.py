"""The tutorial's two images, built from their Dockerfiles without a Docker engine.

``docker build`` needs an engine and Docker Hub's ``python:3.11-slim``; here the same image is
assembled from Debian's and PyPI's parts, as three layers like the Dockerfiles' steps:

1. ``FROM``: a Debian bookworm root made by ``debootstrap --variant=minbase`` with python3 (3.11,
   as the base image) and ``python`` (python-is-python3); needs root and the Debian mirror;
2. ``RUN pip install ...``: the Dockerfile's pinned packages (torch CPU, numpy) and their
   dependencies, installed by this machine's pip for CPython 3.11 on manylinux x86_64 into the
   image's ``/usr/local/lib/python3.11/dist-packages``;
3. ``COPY scripts/ .``: the scripts into ``WORKDIR``;

with the Dockerfile's ``WORKDIR``, ``ENTRYPOINT`` and ``CMD`` as the image config. Both images go
into one OCI image layout (tags ``train`` and ``validation``) sharing layers 1 and 2. Layers 1 and
2 are cached under ``--cache`` (default ``.cache/images``): a second build takes seconds.

    sudo python examples/first-knitfab/build_images.py [--cache .cache/images]

It prints the layout's path; ``skopeo copy oci:LAYOUT:train docker://...`` pushes an image.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIRROR = "http://deb.debian.org/debian"
SITE = "usr/local/lib/python3.11/dist-packages"  # on Debian python3.11's sys.path
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64")
SKIP = {"dev", "proc", "sys", "run", "tmp"}  # kept as empty directories; the sandbox mounts them


def dockerfile(path: Path) -> dict:
    """The instructions of a Dockerfile that make the image: WORKDIR, ENTRYPOINT and CMD as the
    image config's WorkingDir, Entrypoint and Cmd (exec form), and the ``name==version``
    requirements of its ``RUN pip install`` lines. ``Env`` is python:3.11-slim's PATH and LANG."""
    text = re.sub(r"\\\n", " ", path.read_text())
    config: dict = {"Env": [PATH, "LANG=C.UTF-8"]}
    pins: list[str] = []
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        word = word.upper()
        if word == "WORKDIR":
            config["WorkingDir"] = rest.strip()
        elif word in ("ENTRYPOINT", "CMD"):
            config[word.title()] = json.loads(rest)  # exec form only, as the tutorial's
        elif word == "RUN" and "pip install" in rest:
            pins += [arg for arg in shlex.split(rest) if re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.+]+", arg)]
    return {"config": config, "pins": pins}


class Digests:
    """A write-only file that gzips what it is given into ``dest`` and hashes both streams:
    the layer's digest (compressed) and its diff_id (uncompressed)."""

    def __init__(self, dest: Path):
        self.raw, self.packed = hashlib.sha256(), hashlib.sha256()
        self.file = open(dest, "wb")  # noqa: SIM115 (closed in close())
        self.gzip = gzip.GzipFile(fileobj=self, mode="wb", compresslevel=1, mtime=0)

    def write(self, data) -> int:  # called by GzipFile with compressed bytes
        self.packed.update(data)
        return self.file.write(data)

    def add(self, data) -> int:
        self.raw.update(data)
        return self.gzip.write(data)

    def close(self) -> tuple[str, str]:
        self.gzip.close()
        self.file.close()
        return "sha256:" + self.packed.hexdigest(), "sha256:" + self.raw.hexdigest()


class _Raw:
    def __init__(self, digests: Digests):
        self.write = digests.add


def layer(blobs: Path, trees: list[tuple[Path, str]]) -> dict:
    """A gzip layer in ``blobs`` of each (directory, path in the image): its descriptor, plus
    its diff_id. Owners, modes, symlinks and hardlinks are kept; device nodes and the contents
    of /dev, /proc, /sys, /run and /tmp are left out."""
    blobs.mkdir(parents=True, exist_ok=True)
    partial = blobs / f".partial-{time.monotonic_ns()}"
    digests = Digests(partial)
    with tarfile.open(fileobj=_Raw(digests), mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for source, target in trees:
            _parents(tar, target)
            children = sorted(source.iterdir()) if not target else [source]
            for child in children:
                tar.add(child, arcname=target or child.name, filter=_keep)
    digest, diff_id = digests.close()
    size = partial.stat().st_size
    partial.rename(blobs / digest.removeprefix("sha256:"))
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size} | {
        "diff_id": diff_id
    }


def _parents(tar: tarfile.TarFile, target: str) -> None:
    parts = Path(target).parts[:-1]
    for depth in range(1, len(parts) + 1):
        info = tarfile.TarInfo("/".join(parts[:depth]))
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)


def _keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if info.ischr() or info.isblk() or info.isfifo():
        return None
    top, _, below = info.name.partition("/")
    if (top in SKIP and below) or ("__pycache__" in info.name and not info.name.startswith(SITE)):
        return None
    info.mtime = 0  # the same tree gives the same layer
    return info


def image_layout(dest: Path, tag: str, layers: list[dict], config: dict) -> dict:
    """Adds to the OCI image layout at ``dest`` an image of ``layers`` (from :func:`layer`,
    lowest first) with ``config`` (Entrypoint, Cmd, WorkingDir, Env) tagged ``tag``; returns
    its image config."""
    blobs = dest / "blobs" / "sha256"
    image = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [item["diff_id"] for item in layers]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _blob(blobs, image, "application/vnd.oci.image.config.v1+json"),
        "layers": [{k: v for k, v in item.items() if k != "diff_id"} for item in layers],
    }
    top = _blob(blobs, manifest, manifest["mediaType"]) | {"annotations": {"org.opencontainers.image.ref.name": tag}}
    index_file = dest / "index.json"
    index = json.loads(index_file.read_text()) if index_file.exists() else {"schemaVersion": 2, "manifests": []}
    others = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"] = [*others, top]
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index_file.write_text(json.dumps(index))
    return image


def _blob(blobs: Path, document: dict, media_type: str) -> dict:
    content = json.dumps(document).encode()
    digest = hashlib.sha256(content).hexdigest()
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest).write_bytes(content)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(content)}


def cached(cache: Path, name: str, make) -> Path:
    """``cache/name``, made by ``make(tmp)`` once: an interrupted build is redone."""
    final = cache / name
    if not final.exists():
        tmp = cache / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        make(tmp)
        tmp.rename(final)
    return final


def debootstrap(root: Path) -> None:
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        raise SystemExit("the image's root needs debootstrap, as root (scripts/install-system-deps.sh installs it)")
    command = ["debootstrap", "--variant=minbase", "--include=python3,python-is-python3", "bookworm", str(root), MIRROR]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    for clutter in ("var/cache/apt/archives", "var/lib/apt/lists"):  # as the slim images: no .debs
        for item in (root / clutter).glob("*"):
            if item.is_file():
                item.unlink()


def pip_target(pins: list[str]):
    def install(target: Path) -> None:
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        command = [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "--no-compile"]
        command += ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", *platforms, *pins]
        subprocess.run(command, check=True)
        if sys.version_info[:2] == (3, 11):  # the image's root is read-only: python could not cache them
            compiled = [sys.executable, "-m", "compileall", "-q", "-j0", "--invalidation-mode", "unchecked-hash"]
            subprocess.run([*compiled, str(target)], stdout=subprocess.DEVNULL)  # a file it cannot: compiled at run

    return install


def cached_layer(cache: Path, blobs: Path, name: str, trees: list[tuple[Path, str]]) -> dict:
    """The layer of ``trees``, gzipped once: its descriptor is kept in ``cache/name.json``."""
    record = cache / f"{name}.json"
    if record.exists():
        found = json.loads(record.read_text())
        if (blobs / found["digest"].removeprefix("sha256:")).exists():
            return found
    made = layer(blobs, trees)
    record.write_text(json.dumps(made))
    return made


def build(cache: Path, layout: Path) -> dict[str, dict]:
    """Both tutorial images into ``layout`` (tags train and validation); their configs."""
    steps = {name: dockerfile(HERE / f"{name}.Dockerfile") for name in ("train", "validation")}
    pins = sorted({pin for step in steps.values() for pin in step["pins"]})
    blobs = layout / "blobs" / "sha256"
    say("the Debian bookworm root (debootstrap; cached)")
    root = cached(cache, "bookworm-python3", debootstrap)
    base = cached_layer(cache, blobs, "bookworm-python3", [(root, "")])
    say(f"pip install {' '.join(pins)} (cached)")
    key = hashlib.sha256(" ".join([*pins, "compiled"]).encode()).hexdigest()[:12]
    site = cached(cache, f"site-packages-{key}", pip_target(pins))
    packages = cached_layer(cache, blobs, f"site-packages-{key}", [(site, SITE)])
    configs = {}
    for name, step in steps.items():
        workdir = step["config"]["WorkingDir"].lstrip("/")
        scripts = layer(blobs, [(HERE / "scripts", workdir)])
        configs[name] = image_layout(layout, name, [base, packages, scripts], step["config"])
    return configs


START = time.monotonic()


def say(message: str) -> None:
    print(f"[build {time.monotonic() - START:6.1f} s] {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=".cache/images", help="where the root and layers are kept")
    parser.add_argument("--layout", help="the OCI layout to write (default: CACHE/layout)")
    args = parser.parse_args()
    cache = Path(args.cache).resolve()
    layout = Path(args.layout).resolve() if args.layout else cache / "layout"
    for name, config in build(cache, layout).items():
        say(f"{name}: Entrypoint {config['config'].get('Entrypoint')} Cmd {config['config'].get('Cmd')}")
    print(layout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
