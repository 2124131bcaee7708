"""``knit plan template``: a plan file guessed from a ``docker save`` image (spec §9).

The tar stream is read once, front to back, and layers are never held in memory. Every word of
the image's ``Entrypoint`` and ``Cmd`` and every ``Volumes`` path with an ``in`` (or ``out``)
path segment becomes an input (or output), tagged with the knitenv tags and ``type:<segment>``.
The YAML is written by hand, to keep Knitfab's comment blocks and value styles.
"""

from __future__ import annotations

import json
import posixpath
import re
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from .plandefaults import DEFAULT_RESOURCES
from .tagtext import SYSTEM_PREFIX, split_tag

MAX_CONFIG_SIZE = 16 << 20  # image configs are a few KiB; anything bigger is a layer
INPUT = re.compile(r"(^|/)in(/|$)")
OUTPUT = re.compile(r"(^|/)out(/|$)")

Tag = tuple[str, str]

# The document, with the comments Knitfab writes; it starts and ends with a blank line.
TEMPLATE = """
# annotations (optional):
#   Annotations of this plan, as a list of "key=value" strings.
#   Use them for your own purposes, documentation for example. They do not affect lineage.
#   This value can be changed after the plan is applied. For example:
#     - "description=This is a plan for ..."
annotations: []

# image:
#   Container image to be executed as this plan.
#   This image-tag should be accessible from your Knitfab cluster.
image: {image}

# entrypoint (optional):
#   Command to be executed in the image, as a list of strings.
#   This overrides the ENTRYPOINT of the image.
entrypoint: {entrypoint}

# args (optional):
#   Arguments passed to the command, as a list of strings.
#   This overrides the CMD of the image.
args: {args}

# inputs:
#   List of filepath and tags as input of this plans.
#   1 or more inputs are needed.
#   Each filepath should be absolute. Tags should be formatted in "key:value"-style.
inputs:{inputs}

# outputs:
#   List of filepathes and tags as output of this plans.
#   See "inputs" for detail.
outputs:{outputs}

# log (optional):
#   Set tags stored log (STDOUT+STDERR of runs of this plan) as data.
#   If missing or null, log would not be stored.
log:
  tags:{log}

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
  cpu: {cpu}

  # memory (optional; default = 1Gi):
  #   Specify the memory resource requirements for this plan.
  #   This value means "how many bytes" the plan will use.
  #   You can use suffixes like "Ki", "Mi", "Gi" for kibi-(1024), mebi-(1024^2), gibi-(1024^3) bytes, case sensitive.
  #   For example, "1Gi" means 1 gibibyte.
  #   If you omit the suffix, it is assumed as bytes.
  memory: {memory}


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


class TemplateError(Exception):
    """The image cannot give a template; the message is what ``knit`` prints."""


@dataclass
class _Plan:
    image: str
    entrypoint: list[str]
    args: list[str]
    inputs: list[tuple[str, list[Tag]]]
    outputs: list[tuple[str, list[Tag]]]
    log: list[Tag]
    resources: dict[str, str]


def plan_template(
    docker_save: BinaryIO | None,
    image: str | None = None,
    scratch: bool = False,
    env_tags: Sequence[str] = (),
    env_resources: dict[str, str] | None = None,
) -> str:
    """The plan YAML (with Knitfab's comments) for the image in ``docker_save``, or a blank one."""
    tags = _user_tags(env_tags)
    resources = _resources(env_resources)
    if scratch:
        if image:
            raise TemplateError("image:tag and --scratch are exclusive")
        return _render(_scratch_plan(tags, resources))
    if docker_save is None:
        raise TemplateError("no image found")
    return _render(_image_plan(docker_save, image, tags, resources))


def _user_tags(texts: Iterable[str]) -> list[Tag]:
    tags = [_parse_tag(text) for text in texts]
    return [tag for tag in tags if not tag[0].startswith(SYSTEM_PREFIX)]


def _parse_tag(text: str) -> Tag:
    parts = split_tag(text)
    if parts is None:
        raise TemplateError(f"tag parse error: {text} :no key")
    return parts


def _tagset(tags: Iterable[Tag]) -> list[Tag]:
    return sorted(set(tags))


def _scratch_plan(tags: list[Tag], resources: dict[str, str]) -> _Plan:
    tags = _tagset(tags or [("example", "tag")])
    log = _tagset([("type", "log"), *tags])
    return _Plan("image:version", [], [], [("/in", tags)], [("/out", tags)], log, resources)


def plan_template_from_config(
    image_config: dict, image: str, env_tags: Sequence[str] = (), env_resources: dict[str, str] | None = None
) -> str:
    """The plan YAML for an image config read from a registry (``knit plan template --image``)."""
    resources = _resources(env_resources)
    return _render(_config_plan(image_config, image, _user_tags(env_tags), resources))


def _image_plan(stream: BinaryIO, image: str | None, tags: list[Tag], resources: dict[str, str]) -> _Plan:
    configs, repo_tags = _scan(stream)
    name = _choose(configs, repo_tags, image)
    return _config_plan(configs[name], image or next(iter(repo_tags.get(name, [])), "IMAGE:TAG"), tags, resources)


def _config_plan(image_config: dict, image: str, tags: list[Tag], resources: dict[str, str]) -> _Plan:
    config = image_config.get("config")
    config = config if isinstance(config, dict) else {}
    inputs, outputs = _mountpoints(config)
    return _Plan(
        image=image,
        entrypoint=_strings(config.get("Entrypoint")),
        args=_strings(config.get("Cmd")),
        inputs=[(path, _tagset([*tags, *_type_tag(path, "in")])) for path in inputs],
        outputs=[(path, _tagset([*tags, *_type_tag(path, "out")])) for path in outputs],
        log=_tagset([("type", "log"), *tags]),
        resources=resources,
    )


# ---- reading the `docker save` tar


def _scan(stream: BinaryIO) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """Image configs by entry name, and the RepoTags of each config entry."""
    configs: dict[str, dict] = {}
    repo_tags: dict[str, list[str]] = {}
    try:
        with _open_tar(stream) as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if not member.isreg() or member.size > MAX_CONFIG_SIZE:
                    continue
                if name == "manifest.json":
                    repo_tags = _manifest_tags(_read_json(tar, member, b""))
                elif _is_config(doc := _read_json(tar, member, b"{")):
                    configs[name] = doc
    except (tarfile.TarError, EOFError, OSError) as e:
        reason = str(e).splitlines()[0].rstrip(":")  # tarfile lists every compression it tried, one a line
        raise TemplateError(f"cannot read the image (a `docker save` tar is expected): {reason}") from None
    return configs, repo_tags


def _open_tar(stream: BinaryIO) -> tarfile.TarFile:
    # A seekable file can skip layers by seeking; a pipe is read through in large blocks.
    seekable = getattr(stream, "seekable", None)
    if seekable is not None and seekable():
        return tarfile.open(fileobj=stream, mode="r:*")
    return tarfile.open(fileobj=stream, mode="r|*", bufsize=1 << 20)


def _read_json(tar: tarfile.TarFile, member: tarfile.TarInfo, start: bytes) -> object:
    """The entry as JSON, or None when it does not begin with ``start`` or is not JSON."""
    file = tar.extractfile(member)
    if file is None:
        return None
    head = file.read(len(start))
    if head != start:
        return None
    try:
        return json.loads(head + file.read())
    except ValueError:
        return None


def _is_config(doc: object) -> bool:
    return isinstance(doc, dict) and all(doc.get(key) is not None for key in ("os", "architecture", "rootfs"))


def _manifest_tags(manifest: object) -> dict[str, list[str]]:
    repo_tags: dict[str, list[str]] = {}
    for entry in manifest if isinstance(manifest, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("Config"), str):
            name = entry["Config"].removeprefix("./")
            repo_tags.setdefault(name, []).extend(_strings(entry.get("RepoTags")))
    return repo_tags


def _choose(configs: dict[str, dict], repo_tags: dict[str, list[str]], image: str | None) -> str:
    if image:
        found = [name for name in configs if image in repo_tags.get(name, [])]
        if not found:
            raise TemplateError(f"specified image tag '{image}' is not found")
        return found[0]
    if not configs:
        raise TemplateError("no image found")
    if len(configs) > 1:
        raise TemplateError("multiple images found, specify the image tag")
    return next(iter(configs))


# ---- guessing mountpoints


def _mountpoints(config: dict) -> tuple[list[str], list[str]]:
    """Input and output paths, each de-duplicated in the order they are first met."""
    workdir = config.get("WorkingDir")
    workdir = workdir if isinstance(workdir, str) and workdir else "/"
    inputs: dict[str, None] = {}
    outputs: dict[str, None] = {}
    for word in _words(config):
        if INPUT.search(word):
            inputs[_clean(posixpath.join(workdir, word))] = None
        elif OUTPUT.search(word):
            outputs[_clean(posixpath.join(workdir, word))] = None
    return list(inputs), list(outputs)


def _words(config: dict) -> Iterator[str]:
    yield from _strings(config.get("Entrypoint"))
    yield from _strings(config.get("Cmd"))
    volumes = config.get("Volumes")
    yield from _strings(list(volumes) if isinstance(volumes, dict) else [])


def _clean(path: str) -> str:
    # normpath keeps a leading "//" (POSIX allows it to mean something else); Go's path.Clean does not.
    path = posixpath.normpath(path)
    return "/" + path.lstrip("/") if path.startswith("//") else path


def _type_tag(path: str, ignored: str) -> list[Tag]:
    segments = [segment for segment in path.split("/") if segment not in ("", ignored)]
    return [("type", segments[-1])] if segments else []


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


# ---- writing YAML


def _render(plan: _Plan) -> str:
    return TEMPLATE.format(
        image=_quote(plan.image),
        entrypoint=_flow(plan.entrypoint),
        args=_flow(plan.args),
        inputs=_mountpoints_yaml(plan.inputs),
        outputs=_mountpoints_yaml(plan.outputs),
        log=_tags_yaml(plan.log, "    "),
        cpu=_quantity(plan.resources["cpu"]),
        memory=_quantity(plan.resources["memory"]),
    )


def _mountpoints_yaml(mountpoints: list[tuple[str, list[Tag]]]) -> str:
    """The value of ``inputs:`` or ``outputs:``, from just after the colon."""
    items = [f"\n  - path: {_quote(path)}\n    tags:" + _tags_yaml(tags, "      ") for path, tags in mountpoints]
    return "".join(items) or " []"


def _tags_yaml(tags: list[Tag], indent: str) -> str:
    """The value of ``tags:``, from just after the colon."""
    return "".join(f"\n{indent}- {_quote(f'{key}:{value}')}" for key, value in tags) or " []"


def _flow(items: list[str]) -> str:
    return "[" + ", ".join(_quote(item) for item in items) + "]"


# Written plain (``cpu: 1``, ``memory: 1Gi``) as Knitfab does, when YAML reads it back as the
# same quantity: no leading zero (YAML 1.1 reads ``010`` as octal 8), no exponent, no sign.
PLAIN_QUANTITY = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]*[1-9])?([KMGTPE]i?|[mk])?")


def _quantity(text: str) -> str:
    return text if PLAIN_QUANTITY.fullmatch(text) else _quote(text)


def _quote(text: str) -> str:
    return '"' + "".join(_escape(char) for char in text) + '"'


def _escape(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _resources(env_resources: dict[str, str] | None) -> dict[str, str]:
    """The default resources, the knitenv's values in their place."""
    return {key: str((env_resources or {}).get(key) or value) for key, value in DEFAULT_RESOURCES.items()}
