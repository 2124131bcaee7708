"""knit.template: `knit plan template` guesses a plan from a `docker save` tar (spec §9)."""

import hashlib
import io
import json
import tarfile

import pytest
import yaml

from knit import template
from knit.template import TemplateError, plan_template
from knitfab.planspec import parse_plan_spec

TRAIN = {
    "Entrypoint": ["python", "-u", "train.py"],
    "Cmd": ["--dataset", "/in/dataset", "--save-to", "/out/model"],
    "WorkingDir": "/work",
}


class Pipe(io.RawIOBase):
    """A non-seekable stream, like `docker save | knit plan template`."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        return self._data.readinto(buffer)


def add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def image_config(config: dict, **top) -> bytes:
    doc = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "config": config}
    return json.dumps({**doc, **top}).encode()


def docker_save(*images: tuple[list[str], dict], layer: bytes = b"layer data" * 100) -> bytes:
    """A `docker save` tar of images given as (RepoTags, config) pairs, with legacy entries to ignore."""
    out = io.BytesIO()
    manifest = []
    with tarfile.open(fileobj=out, mode="w") as tar:
        for n, (repo_tags, config) in enumerate(images):
            body = image_config(config)
            sha = hashlib.sha256(body + bytes([n])).hexdigest()
            add(tar, f"{sha}/VERSION", b"1.0")
            add(tar, f"{sha}/json", json.dumps({"id": sha, "os": "linux", "architecture": "amd64"}).encode())
            add(tar, f"{sha}/layer.tar", layer)
            add(tar, f"{sha}.json", body)
            manifest.append({"Config": f"{sha}.json", "RepoTags": repo_tags, "Layers": [f"{sha}/layer.tar"]})
        add(tar, "repositories", json.dumps({"repo/train": {"v1": "0" * 64}}).encode())
        add(tar, "manifest.json", json.dumps(manifest).encode())
    return out.getvalue()


def template_of(*images, **kwargs) -> str:
    return plan_template(io.BytesIO(docker_save(*images)), **kwargs)


def plan_of(*images, **kwargs) -> dict:
    return yaml.safe_load(template_of(*images, **kwargs))


def resources(plan: dict) -> dict[str, str]:
    """Resources as ``knit plan apply`` reads them: plain ``cpu: 1`` is a YAML number."""
    return {key: str(value) for key, value in plan["resources"].items()}


def mountpoints(plan: dict, key: str) -> dict[str, list[str]]:
    return {m["path"]: m["tags"] for m in plan[key]}


EXPECTED_TRAIN = """
# annotations (optional):
#   Annotations of this plan, as a list of "key=value" strings.
#   Use them for your own purposes, documentation for example. They do not affect lineage.
#   This value can be changed after the plan is applied. For example:
#     - "description=This is a plan for ..."
annotations: []

# image:
#   Container image to be executed as this plan.
#   This image-tag should be accessible from your Knitfab cluster.
image: "repo/train:v1"

# entrypoint (optional):
#   Command to be executed in the image, as a list of strings.
#   This overrides the ENTRYPOINT of the image.
entrypoint: ["python", "-u", "train.py"]

# args (optional):
#   Arguments passed to the command, as a list of strings.
#   This overrides the CMD of the image.
args: ["--dataset", "/in/dataset", "--save-to", "/out/model"]

# inputs:
#   List of filepath and tags as input of this plans.
#   1 or more inputs are needed.
#   Each filepath should be absolute. Tags should be formatted in "key:value"-style.
inputs:
  - path: "/in/dataset"
    tags:
      - "type:dataset"

# outputs:
#   List of filepathes and tags as output of this plans.
#   See "inputs" for detail.
outputs:
  - path: "/out/model"
    tags:
      - "type:model"

# log (optional):
#   Set tags stored log (STDOUT+STDERR of runs of this plan) as data.
#   If missing or null, log would not be stored.
log:
  tags:
    - "type:log"

# active (optional):
#   To suspend executing runs by this plan, set false explicitly.
#   If missing or null, it is assumed as true.
active: true

# resources (optional):
# Specify the resources, cpu or memory for example, requirements for this plan.
# This value can be changed after the plan is applied.

# There can be other resources. For them, ask your administrator.

# (advanced note: These values are passed to container.resource.limits in kubernetes.)
resources:

  # cpu (optional; default = 1):
  #   Specify the CPU resource requirements for this plan.
  #   This value means "how many cores" the plan will use.
  #   This can be a fraction, like "0.5" or "500m" (= 500 millicore) for half a core.
  cpu: 1

  # memory (optional; default = 1Gi):
  #   Specify the memory resource requirements for this plan.
  #   This value means "how many bytes" the plan will use.
  #   You can use suffixes like "Ki", "Mi", "Gi" for kibi-(1024), mebi-(1024^2), gibi-(1024^3) bytes, case sensitive.
  #   For example, "1Gi" means 1 gibibyte.
  #   If you omit the suffix, it is assumed as bytes.
  memory: 1Gi


# # on_node (optional):
# #   Specify the node where this plan is executed.
# #
# #   For each level (may, prefer and must), you can put node labels or taints in "key=value" format.
# #   Labels show a node characteristic, and taints show a node restriction.
# #   Ask your administrator for the available labels/taints.
# #
# #   By default (= empty), this plan is executed on any node, if the node does not taint.
# on_node:
#   # may: (optional)
#   #   Allow to execute this plan on nodes with these taints, put here.
#   may:
#     - "label-a=value1"
#     - "label-b=value2"
#
#   # prefer: (optional)
#   #   Execute this plan on nodes with these labels & taints, if possible.
#   prefer:
#     - "vram=large"
#
#   # must: (optional)
#   #   Always execute this plan on nodes with these labels & taints
#   #   (taints on node can be subset of this list).
#   #
#   #   If no node matches, runs of the plan will be scheduled but not started.
#   must:
#     - "accelarator=gpu"
#
# # service_account (optional):
# #   Kubernetes service account which runs of this plan use. Ask your administrator for one.
# #   If missing or null, runs use no service account.
# #   This value can be changed after the plan is applied.
# service_account: "default"

"""


@pytest.mark.parametrize("stream", [io.BytesIO, Pipe], ids=["file", "pipe"])
def test_whole_template_for_a_simple_image(stream):
    assert plan_template(stream(docker_save((["repo/train:v1"], TRAIN)))) == EXPECTED_TRAIN


def test_template_is_a_valid_plan_with_every_key_in_order():
    doc = plan_of((["repo/train:v1"], TRAIN))
    assert list(doc) == [
        "annotations", "image", "entrypoint", "args", "inputs", "outputs", "log", "active", "resources",
    ]  # fmt: skip
    spec = parse_plan_spec(doc, strict=True)
    assert (spec.image, spec.version) == ("repo/train", "v1")
    assert spec.entrypoint == ["python", "-u", "train.py"]
    assert spec.resources == {"cpu": "1", "memory": "1Gi"}


def test_uncommenting_the_footer_gives_on_node_and_service_account():
    text = template_of((["repo/train:v1"], TRAIN))
    footer = text[text.index("# # on_node") :]
    uncommented = "\n".join(line.removeprefix("# ") if line != "#" else "" for line in footer.splitlines())
    assert yaml.safe_load(uncommented) == {
        "on_node": {"may": ["label-a=value1", "label-b=value2"], "prefer": ["vram=large"], "must": ["accelarator=gpu"]},
        "service_account": "default",
    }


def test_mountpoints_from_entrypoint_cmd_and_volumes():
    config = {
        "Entrypoint": ["/app/run", "--in", "in/data"],
        "Cmd": ["/in", "/in/data/", "/out/model", "/in//data", "--out=/out/model"],
        "Volumes": {"/out/log": {}, "/in/../in/config": {}, "/var/cache": {}},
        "WorkingDir": "/work",
    }
    doc = plan_of((["repo/train:v1"], config))
    assert mountpoints(doc, "inputs") == {
        "/work/in/data": ["type:data"],
        "/in": [],
        "/in/data": ["type:data"],
        "/in/config": ["type:config"],
    }
    assert mountpoints(doc, "outputs") == {
        "/out/model": ["type:model"],
        "/work/--out=/out/model": ["type:model"],  # Knitfab's heuristic takes any word with an /out/ segment
        "/out/log": ["type:log"],
    }
    assert doc["entrypoint"] == config["Entrypoint"]
    assert doc["args"] == config["Cmd"]


def test_a_relative_word_uses_the_root_without_workdir_and_a_word_named_in_alone():
    config = {"Cmd": ["in", "data/out", "input/x", "outdir"]}
    doc = plan_of((["repo/train:v1"], config))
    assert mountpoints(doc, "inputs") == {"/in": []}
    assert mountpoints(doc, "outputs") == {"/data/out": ["type:data"]}


def test_input_order_is_first_seen_and_stable():
    config = {"Entrypoint": ["/in/b"], "Cmd": ["/in/a", "/in/b", "/in/c"], "Volumes": {"/in/a": {}}}
    doc = plan_of((["repo/train:v1"], config))
    assert [m["path"] for m in doc["inputs"]] == ["/in/b", "/in/a", "/in/c"]


def test_no_entrypoint_cmd_or_mountpoints():
    text = template_of((["repo/train:v1"], {"Entrypoint": None, "Cmd": None, "Volumes": None}))
    assert "entrypoint: []\n" in text and "args: []\n" in text
    assert "inputs: []\n" in text and "outputs: []\n" in text
    doc = yaml.safe_load(text)
    assert (doc["entrypoint"], doc["args"], doc["inputs"], doc["outputs"]) == ([], [], [], [])


def test_image_argument_chooses_among_images():
    images = (["repo/train:v1", "repo/train:latest"], TRAIN), (["repo/eval:v2"], {"Cmd": ["/in/model"]})
    doc = plan_of(*images, image="repo/eval:v2")
    assert doc["image"] == "repo/eval:v2"
    assert mountpoints(doc, "inputs") == {"/in/model": ["type:model"]}
    assert plan_of(*images, image="repo/train:latest")["image"] == "repo/train:latest"


def test_image_argument_with_registry_port():
    doc = plan_of((["localhost:30503/train:v1"], TRAIN), image="localhost:30503/train:v1")
    assert doc["image"] == "localhost:30503/train:v1"
    assert parse_plan_spec(doc).image == "localhost:30503/train"


def test_first_repo_tag_without_argument_and_placeholder_without_tags():
    assert plan_of((["repo/train:v1", "repo/train:latest"], TRAIN))["image"] == "repo/train:v1"
    assert plan_of(([], TRAIN))["image"] == "IMAGE:TAG"


def test_unknown_image_tag():
    with pytest.raises(TemplateError) as e:
        template_of((["repo/train:v1"], TRAIN), image="repo/train:v2")
    assert str(e.value) == "specified image tag 'repo/train:v2' is not found"


def test_multiple_images_need_the_tag():
    with pytest.raises(TemplateError) as e:
        template_of((["repo/train:v1"], TRAIN), (["repo/eval:v1"], TRAIN))
    assert str(e.value) == "multiple images found, specify the image tag"


def test_no_image():
    with pytest.raises(TemplateError) as e:
        template_of()
    assert str(e.value) == "no image found"


@pytest.mark.parametrize("stream", [io.BytesIO, Pipe], ids=["file", "pipe"])
@pytest.mark.parametrize("data", [b"", b"this is not a tar" * 100], ids=["empty", "text"])
def test_not_a_tar(stream, data):
    with pytest.raises(TemplateError) as e:
        plan_template(stream(data))
    assert str(e.value).startswith("cannot read the image (a `docker save` tar is expected): ")
    assert "\n" not in str(e.value)


def test_big_files_are_not_read(monkeypatch):
    monkeypatch.setattr(template, "MAX_CONFIG_SIZE", 1000)
    read = []
    extract = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda tar, m: read.append(m.name) or extract(tar, m))
    layer = image_config({"Cmd": ["/in/layer"]}) + b" " * 2000  # looks like a config, but is too big
    plan_template(Pipe(docker_save((["repo/train:v1"], TRAIN), layer=layer)))
    assert read and not any(name.endswith("layer.tar") for name in read)


def test_knitenv_tags_and_resources():
    env_tags = ["project:first", "knit#id:abc", "mode : training", "type:dataset"]
    env_resources = {"cpu": "0.5", "memory": "2Gi", "nvidia.com/gpu": "1"}
    text = template_of((["repo/train:v1"], TRAIN), env_tags=env_tags, env_resources=env_resources)
    doc = yaml.safe_load(text)
    assert mountpoints(doc, "inputs") == {"/in/dataset": ["mode:training", "project:first", "type:dataset"]}
    assert mountpoints(doc, "outputs") == {
        "/out/model": ["mode:training", "project:first", "type:dataset", "type:model"]
    }
    assert doc["log"] == {"tags": ["mode:training", "project:first", "type:dataset", "type:log"]}
    assert resources(doc) == {"cpu": "0.5", "memory": "2Gi"}
    assert "nvidia.com" not in text and "knit#" not in text
    assert '      - "mode:training"\n      - "project:first"\n' in text


def test_resources_are_written_plain_unless_yaml_would_read_them_otherwise():
    text = template_of((["repo/train:v1"], TRAIN), env_resources={"cpu": "500m", "memory": "010"})
    assert "\n  cpu: 500m\n" in text and '\n  memory: "010"\n' in text
    assert resources(yaml.safe_load(text)) == {"cpu": "500m", "memory": "010"}


def test_partial_knitenv_resources_use_defaults():
    doc = plan_of((["repo/train:v1"], TRAIN), env_resources={"memory": "4Gi"})
    assert resources(doc) == {"cpu": "1", "memory": "4Gi"}


def test_scratch_without_knitenv():
    doc = yaml.safe_load(plan_template(None, scratch=True))
    assert doc["image"] == "image:version"
    assert doc["inputs"] == [{"path": "/in", "tags": ["example:tag"]}]
    assert doc["outputs"] == [{"path": "/out", "tags": ["example:tag"]}]
    assert doc["log"] == {"tags": ["example:tag", "type:log"]}
    assert (doc["entrypoint"], doc["args"], doc["annotations"], doc["active"]) == ([], [], [], True)
    assert resources(doc) == {"cpu": "1", "memory": "1Gi"}
    parse_plan_spec(doc, strict=True)


def test_scratch_with_knitenv():
    text = plan_template(None, scratch=True, env_tags=["project:p", "knit#timestamp:x"], env_resources={"cpu": "2"})
    doc = yaml.safe_load(text)
    assert doc["inputs"] == [{"path": "/in", "tags": ["project:p"]}]
    assert doc["outputs"] == [{"path": "/out", "tags": ["project:p"]}]
    assert doc["log"] == {"tags": ["project:p", "type:log"]}
    assert resources(doc) == {"cpu": "2", "memory": "1Gi"}
    assert text.startswith("\n# annotations") and text.endswith('# service_account: "default"\n\n')


def test_scratch_excludes_an_image_argument():
    with pytest.raises(TemplateError):
        plan_template(None, "repo/train:v1", scratch=True)


def test_strings_are_escaped():
    config = {"Cmd": ['say "hi"', "back\\slash", "tab\there", '/in/q"uote']}
    doc = plan_of((["repo/train:v1"], config), env_tags=['note:a "quoted" \\ value'])
    assert doc["args"] == config["Cmd"]
    assert mountpoints(doc, "inputs") == {'/in/q"uote': ['note:a "quoted" \\ value', 'type:q"uote']}


def test_oci_layout_docker_save():
    """Docker 25+ writes configs as blobs/sha256/<hex> next to OCI manifests and an index."""
    body = image_config(TRAIN)
    sha = hashlib.sha256(body).hexdigest()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        add(tar, "blobs/sha256/" + "1" * 64, json.dumps({"schemaVersion": 2, "config": {"digest": sha}}).encode())
        add(tar, f"blobs/sha256/{sha}", body)
        add(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": []}).encode())
        add(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        manifest = [{"Config": f"blobs/sha256/{sha}", "RepoTags": ["repo/train:v1"]}]
        add(tar, "manifest.json", json.dumps(manifest).encode())
    assert plan_template(Pipe(out.getvalue())) == EXPECTED_TRAIN
