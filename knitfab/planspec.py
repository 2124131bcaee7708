"""Plan specs: parsing a plan definition (JSON or YAML) and the ten rules of spec §5.2.

``parse_plan_spec`` turns a decoded document into a validated ``PlanSpec`` or raises
``BadRequest`` with Knitfab's message. Equivalence (rule 9) and cycles (rule 10) need the
other plans and are checked by ``knitfab.store.plans``; ``plan_hash`` is the equivalence key.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass, field

from knit.plandefaults import DEFAULT_RESOURCES

from . import quantity
from .errors import BadRequest
from .tags import KEY_ID, KEY_TIMESTAMP, KEY_TRANSIENT, Tag, has_control, normalize, shown, tag_from_json
from .times import parse_rfc3339

SPEC_FIELDS = {
    "annotations", "image", "entrypoint", "args", "inputs", "outputs", "log",
    "on_node", "resources", "service_account", "active",
}  # fmt: skip
ON_NODE_MODES = ("may", "prefer", "must")
_LABEL_NAME = r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?"
_LABEL_KEY = re.compile(rf"^({_LABEL_NAME}(\.{_LABEL_NAME})*/)?[a-zA-Z0-9]([-_.a-zA-Z0-9]{{0,61}}[a-zA-Z0-9])?$")
_LABEL_VALUE = re.compile(r"^[a-zA-Z0-9]([-._a-zA-Z0-9]{0,61}[a-zA-Z0-9])?$")
_IMAGE_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_IMAGE_REPO = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._:/-]*$")
# Sizes no sane plan reaches; beyond them a plan is an attack on the store or the runners.
MAX_IMAGE = 255  # Docker's limit for a repository name
MAX_PATH, MAX_NAME = 4096, 255  # Linux's PATH_MAX and NAME_MAX
MAX_MOUNTPOINTS = 128  # inputs, outputs each (overlaps are checked pairwise)
MAX_TAGS = 256  # per mountpoint or log
MAX_ITEMS = 1024  # entrypoint, args, annotations, resources each
MAX_ARG = 128 << 10  # Linux's MAX_ARG_STRLEN
MAX_ANNOTATION_VALUE = 64 << 10


@dataclass
class Mountpoint:
    path: str
    tags: list[Tag]

    def user_tags(self) -> list[Tag]:
        return [t for t in self.tags if not t.is_system]


@dataclass
class PlanSpec:
    image: str
    version: str
    inputs: list[Mountpoint]
    outputs: list[Mountpoint] = field(default_factory=list)
    log: list[Tag] | None = None  # None: the plan keeps no log
    entrypoint: list[str] | None = None
    args: list[str] | None = None
    active: bool = True
    resources: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    on_node: list[tuple[str, str, str]] = field(default_factory=list)  # (mode, key, value)
    service_account: str | None = None
    annotations: list[tuple[str, str]] = field(default_factory=list)


def invalid(advice: str) -> BadRequest:
    return BadRequest(f"plan spec is invalid: {advice}")


def parse_plan_spec(doc: object, strict: bool = True) -> PlanSpec:
    """Validate a plan definition. ``strict`` refuses unknown keys (the API's JSON body);
    YAML files read by the CLI ignore them as Knitfab does."""
    if not isinstance(doc, dict):
        raise invalid("a plan must be a mapping")
    if strict and set(doc) - SPEC_FIELDS:
        raise invalid(f"unknown fields: {', '.join(sorted(set(doc) - SPEC_FIELDS))}")
    on_node = _on_node(doc.get("on_node"))
    image, version = parse_image(_string(doc, "image", required=True))
    inputs, outputs = _list(doc, "inputs", MAX_MOUNTPOINTS), _list(doc, "outputs", MAX_MOUNTPOINTS)
    spec = PlanSpec(
        image=image,
        version=version,
        inputs=[_mountpoint(m, "inputs") for m in inputs],
        outputs=[_mountpoint(m, "outputs") for m in outputs],
        log=_log(doc.get("log")),
        entrypoint=_strings(doc, "entrypoint") or None,
        args=_strings(doc, "args") or None,
        active=_active(doc.get("active")),
        resources=_resources(doc.get("resources")),
        on_node=on_node,
        service_account=_service_account(doc.get("service_account")),
        annotations=[parse_annotation(a) for a in _strings(doc, "annotations")],
    )
    _check_mountpoints(spec)
    return spec


def parse_image(text: str) -> tuple[str, str]:
    """``[host[:port]/][path/]name[:tag]`` → (repository, tag); the tag defaults to latest."""
    if len(text) > MAX_IMAGE + 129:
        raise invalid(f"image is longer than {MAX_IMAGE} characters and a tag: {shown(text)}")
    repo, sep, tag = text.rpartition(":")
    if not sep or "/" in tag:
        repo, tag = text, "latest"
    if not repo or not tag or not _IMAGE_REPO.fullmatch(repo) or not _IMAGE_TAG.fullmatch(tag):
        raise invalid(f"nameless or versionless image({shown(text)})")
    if len(repo) > MAX_IMAGE:
        raise invalid(f"image is longer than {MAX_IMAGE} characters: {shown(text)}")
    return repo, tag


def parse_annotation(text: object) -> tuple[str, str]:
    if not isinstance(text, str) or "=" not in text:
        raise BadRequest(f"annotation should be formatted as KEY=VALUE: {shown(repr(text))}")
    key, value = (s.strip() for s in text.split("=", 1))
    if not key or len(key) > 253 or has_control(key):
        raise BadRequest(f"annotation key must be 1 to 253 characters, no control characters: {shown(text)}")
    if len(value) > MAX_ANNOTATION_VALUE or "\0" in value:
        raise BadRequest(f"annotation value must be at most 64 KiB, without NUL: {shown(key)}")
    return key, value


def plan_hash(spec: PlanSpec) -> str:
    """SHA-256 over what makes two plans equivalent (§5.2 rule 9)."""
    h = hashlib.sha256()
    parts = [spec.image, spec.version]
    parts += [f"{mode}:{k}={v}" for mode, k, v in sorted(spec.on_node)]
    for mp in sorted(spec.inputs, key=lambda m: m.path):
        parts += ["in", mp.path] + [str(t) for t in mp.tags]
    for mp in sorted(spec.outputs, key=lambda m: m.path):
        parts += ["out", mp.path] + [str(t) for t in mp.tags]
    if spec.log is not None:
        parts += ["/log"] + [str(t) for t in spec.log]
    parts += ["[entrypoint]"] + (spec.entrypoint or []) + ["[args]"] + (spec.args or [])
    for part in parts:
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def _string(doc: dict, key: str, required: bool = False) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise invalid(f"{key} must be a string" + (" and is required" if required else ""))
    return value.strip()


def _list(doc: dict, key: str, limit: int = MAX_ITEMS) -> list:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(f"{key} must be a list")
    if len(value) > limit:
        raise invalid(f"{key} has more than {limit} items")
    return value


def _strings(doc: dict, key: str) -> list[str]:
    items = _list(doc, key)
    if not all(isinstance(s, str) for s in items):
        raise invalid(f"{key} must be a list of strings")
    if any(len(s) > MAX_ARG or "\0" in s for s in items):
        raise invalid(f"each of {key} must be at most 128 KiB, without NUL (a command line cannot carry it)")
    return items


def _tags(raw: object, where: str) -> list[Tag]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise invalid(f"tags of {where} must be a list")
    if len(raw) > MAX_TAGS:
        raise invalid(f"{where} has more than {MAX_TAGS} tags")
    return normalize(tag_from_json(t) for t in raw)


def _mountpoint(raw: object, kind: str) -> Mountpoint:
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
        raise invalid(f"each of {kind} must have a path and tags")
    if set(raw) - {"path", "tags"}:
        raise invalid(f"unknown fields in {kind}: {', '.join(sorted(set(raw) - {'path', 'tags'}))}")
    path = raw["path"]
    if len(path) > MAX_PATH or has_control(path) or any(len(part) > MAX_NAME for part in path.split("/")):
        raise invalid(f"bad mountpoint path (path = {shown(path)}): control characters, or too long")
    return Mountpoint(path, _tags(raw.get("tags"), f"{kind} {path}"))


def _log(raw: object) -> list[Tag] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"tags"}:
        raise invalid('log must be {"tags": [...]} or null')
    return _tags(raw.get("tags"), "log")


def _active(raw: object) -> bool:
    if raw is None:
        return True
    if not isinstance(raw, bool):
        raise invalid("active must be true or false")
    return raw


def _resources(raw: object) -> dict[str, str]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise invalid("resources must be a mapping of resource type to quantity")
    resources = dict(DEFAULT_RESOURCES)
    # YAML reads `cpu: 2` as a number; Knitfab reads it as the string "2".
    if len(raw) > MAX_ITEMS or any(len(str(k)) > 253 or has_control(str(k)) for k in raw):
        raise invalid("resources: at most 1024 types, each a name of at most 253 characters")
    resources.update({str(k): quantity.canonical(v) for k, v in raw.items()})
    return resources


def _service_account(raw: object) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or len(raw) > 63 or has_control(raw):
        raise invalid("service_account must be a string of at most 63 characters")
    return raw


def _on_node(raw: object) -> list[tuple[str, str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, dict) or set(raw) - set(ON_NODE_MODES):
        raise invalid("on_node: must be a mapping with keys may, prefer and must")
    labels = []
    for mode in ON_NODE_MODES:
        for item in raw.get(mode) or []:
            key, value = _label(item)
            labels.append((mode, key, value))
    return sorted(set(labels))


def _label(item: object) -> tuple[str, str]:
    key, sep, value = item.partition("=") if isinstance(item, str) else ("", "", "")
    prefix = key.rpartition("/")[0]
    if not sep or not _LABEL_KEY.fullmatch(key) or len(prefix) > 253:
        raise invalid(f"on_node: invalid key: {shown(repr(item))}")
    if not _LABEL_VALUE.fullmatch(value):
        raise invalid(f"on_node: invalid value: {shown(repr(item))}")
    return key, value


def _check_mountpoints(spec: PlanSpec) -> None:
    if not spec.inputs:
        raise invalid("unreachable plan: no inputs")
    for mp in spec.inputs + spec.outputs:
        mp.path = _clean_path(mp.path)
    for mp in spec.inputs:
        _check_input_tags(mp)
    for mp in spec.outputs:
        if any(t.is_system for t in mp.tags):
            raise invalid(f"bad tag (path = {mp.path}): system tags cannot be given to outputs")
    if spec.log and any(t.is_system for t in spec.log):
        raise invalid("bad tag (log): system tags cannot be given to the log")
    _check_overlaps([mp.path for mp in spec.inputs + spec.outputs])
    spec.inputs.sort(key=lambda m: m.path)
    spec.outputs.sort(key=lambda m: m.path)


def _clean_path(path: str) -> str:
    p = path[:-1] if path.endswith("/") else path
    if not p or not p.startswith("/") or posixpath.normpath(p) != p or p.startswith("//"):
        raise invalid(f"bad mountpoint path (path = {path}) not absolute or not clean")
    return p


def _check_input_tags(mp: Mountpoint) -> None:
    if not mp.tags:
        raise invalid(f"bad tag (path = {mp.path}): no tags for input")
    for tag in mp.tags:
        if tag.key == KEY_TRANSIENT:
            raise invalid(f'bad tag (path = {mp.path}): data with "knit#transient" are never used')
        if tag.is_system and tag.key not in (KEY_ID, KEY_TIMESTAMP):
            raise invalid(f"bad tag (path = {mp.path}): unknown system tag: {tag}")
    for key in (KEY_ID, KEY_TIMESTAMP):
        values = {t.value for t in mp.tags if t.key == key}
        if key == KEY_TIMESTAMP:
            values = {parse_rfc3339(v) for v in values}
        if len(values) > 1:
            raise invalid(f"bad tag (path = {mp.path}): {key} is given twice with different values")


def _check_overlaps(paths: list[str]) -> None:
    # Knitfab compares as strings, so /in/data and /in/data2 overlap too (spec §14.9): kept,
    # because plans accepted here must also be accepted by Knitfab.
    for i, a in enumerate(paths):
        for b in paths[i + 1 :]:
            if (a + "/").startswith(b) or (b + "/").startswith(a):
                raise invalid(f"mountpoints are overlapped: {a}, {b}")
