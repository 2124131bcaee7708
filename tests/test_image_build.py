"""``make demo-images`` builds the tutorial's images from their Dockerfiles without an engine
(examples/first-knitfab/build_images.py): the recipe gives the Dockerfiles' ENTRYPOINT, CMD and
WORKDIR, and a root plus that config becomes an OCI layout that skopeo reads and our unpacker
turns back into the same tree. The full build (debootstrap, torch) is not run here: minutes, GBs."""

import json
import os
import re
import sys
from pathlib import Path

import pytest
from oci_helpers import have, skopeo

from knitfab.images.rootfs import Unpacker

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "first-knitfab"
sys.path.insert(0, str(EXAMPLE))
import build_images  # noqa: E402


def test_the_recipe_is_the_dockerfiles():
    train = build_images.dockerfile(EXAMPLE / "train.Dockerfile")
    validation = build_images.dockerfile(EXAMPLE / "validation.Dockerfile")
    assert train["config"]["Entrypoint"] == ["python", "-u", "train.py"]
    assert train["config"]["Cmd"] == ["--dataset", "/in/dataset", "--save-to", "/out/model"]
    entrypoint = ["python", "-u", "validation.py", "--dataset", "/in/dataset", "--model", "/in/model/model.pth"]
    assert validation["config"]["Entrypoint"] == entrypoint and "Cmd" not in validation["config"]
    assert train["config"]["WorkingDir"] == validation["config"]["WorkingDir"] == "/work"
    assert train["pins"] == validation["pins"] == ["numpy==2.4.6", "torch==2.13.0"]


def a_root(path: Path) -> Path:
    (path / "usr" / "bin").mkdir(parents=True)
    (path / "usr" / "bin" / "python3.11").write_text("#!/bin/sh\n")
    (path / "usr" / "bin" / "python3.11").chmod(0o755)
    (path / "usr" / "bin" / "python").symlink_to("python3.11")
    os.link(path / "usr" / "bin" / "python3.11", path / "usr" / "bin" / "python3")
    (path / "proc" / "1").mkdir(parents=True)  # a leftover of a mounted /proc: left out
    return path


def test_a_root_and_the_dockerfile_become_an_oci_layout(tmp_path):
    layout, blobs = tmp_path / "layout", tmp_path / "layout" / "blobs" / "sha256"
    base = build_images.layer(blobs, [(a_root(tmp_path / "root"), "")])
    scripts = build_images.layer(blobs, [(EXAMPLE / "scripts", "work")])
    config = build_images.dockerfile(EXAMPLE / "train.Dockerfile")["config"]
    build_images.image_layout(layout, "train", [base, scripts], config)
    build_images.image_layout(layout, "validation", [base], {"Entrypoint": ["true"]})

    (index,) = [m for m in json.loads((layout / "index.json").read_text())["manifests"] if "train" in str(m)]
    manifest = json.loads((blobs / index["digest"].removeprefix("sha256:")).read_bytes())
    image = json.loads((blobs / manifest["config"]["digest"].removeprefix("sha256:")).read_bytes())
    assert image["config"]["Entrypoint"] == ["python", "-u", "train.py"] and image["config"]["WorkingDir"] == "/work"
    assert image["rootfs"]["diff_ids"] == [base["diff_id"], scripts["diff_id"]]

    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    unpacker = Unpacker(unpacked)
    for item in manifest["layers"]:
        with open(blobs / item["digest"].removeprefix("sha256:"), "rb") as stream:
            unpacker.apply(stream)
    unpacker.close()
    assert os.readlink(unpacked / "usr" / "bin" / "python") == "python3.11"
    assert (unpacked / "usr" / "bin" / "python3").stat().st_ino == (unpacked / "usr/bin/python3.11").stat().st_ino
    assert (unpacked / "work" / "train.py").read_text() == (EXAMPLE / "scripts" / "train.py").read_text()
    assert (unpacked / "proc").is_dir() and not (unpacked / "proc" / "1").exists()


@pytest.mark.skipif(not have("skopeo"), reason="needs skopeo")
def test_skopeo_reads_the_layout(tmp_path):
    layout, blobs = tmp_path / "layout", tmp_path / "layout" / "blobs" / "sha256"
    base = build_images.layer(blobs, [(a_root(tmp_path / "root"), "")])
    build_images.image_layout(layout, "train", [base], build_images.dockerfile(EXAMPLE / "train.Dockerfile")["config"])
    found = skopeo("inspect", "--config", f"oci:{layout}:train")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["config"]["Cmd"] == ["--dataset", "/in/dataset", "--save-to", "/out/model"]


def test_make_demo_images_is_a_documented_target():
    assert re.search(r"^demo-images:.*## ", (ROOT / "Makefile").read_text(), re.M)
    for doc in ("README.md", "docs/images.md"):
        assert "make demo-images" in (ROOT / doc).read_text(), doc
