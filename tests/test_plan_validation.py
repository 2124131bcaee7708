"""The ten rules of spec §5.2 (rules 9 and 10 need the store: see test_planstore.py)."""

import pytest

from knitfab.errors import BadRequest
from knitfab.planspec import parse_plan_spec, plan_hash
from knitfab.tags import Tag


def doc(**over):
    d = {
        "image": "repo/train:v1",
        "inputs": [{"path": "/in/dataset", "tags": ["type:dataset"]}],
        "outputs": [{"path": "/out/model", "tags": ["type:model"]}],
        "log": {"tags": ["type:log"]},
    }
    d.update(over)
    return d


def advice(**over) -> str:
    with pytest.raises(BadRequest) as e:
        parse_plan_spec(doc(**over))
    assert e.value.status == 400
    return e.value.advice


def test_a_valid_plan_gets_knitfabs_defaults():
    spec = parse_plan_spec(doc())
    assert (spec.image, spec.version) == ("repo/train", "v1")
    assert spec.active is True
    assert spec.resources == {"cpu": "1", "memory": "1Gi"}
    assert spec.log == [Tag("type", "log")]


def test_image_without_tag_is_latest_and_registry_ports_survive():
    assert parse_plan_spec(doc(image="localhost:30503/train")).version == "latest"
    spec = parse_plan_spec(doc(image="localhost:30503/train:v1.0"))
    assert (spec.image, spec.version) == ("localhost:30503/train", "v1.0")


def test_rule1_on_node_labels():
    assert "on_node: invalid key" in advice(on_node={"may": ["-bad=x"]})
    assert "on_node: invalid value" in advice(on_node={"must": ["gpu="]})
    spec = parse_plan_spec(doc(on_node={"prefer": ["example.com/gpu=yes"]}))
    assert spec.on_node == [("prefer", "example.com/gpu", "yes")]


def test_rule2_nameless_or_versionless_image():
    assert advice(image="repo:") == "plan spec is invalid: nameless or versionless image(repo:)"
    assert "image must be a string" in advice(image="")


def test_rule3_at_least_one_input():
    assert advice(inputs=[]) == "plan spec is invalid: unreachable plan: no inputs"


@pytest.mark.parametrize("path", ["relative", "/in/../etc", "/in//x", "/in/./x", "/", ""])
def test_rule4_paths_must_be_absolute_and_clean(path):
    assert "not absolute or not clean" in advice(inputs=[{"path": path, "tags": ["a:b"]}])


def test_rule4_one_trailing_slash_is_stripped():
    assert parse_plan_spec(doc(outputs=[{"path": "/out/model/", "tags": []}])).outputs[0].path == "/out/model"


def test_rule5_inputs_need_tags():
    assert (
        advice(inputs=[{"path": "/in/x", "tags": []}])
        == "plan spec is invalid: bad tag (path = /in/x): no tags for input"
    )


def test_rule6_input_system_tags():
    assert '"knit#transient" are never used' in advice(inputs=[{"path": "/in/x", "tags": ["knit#transient:failed"]}])
    assert "unknown system tag" in advice(inputs=[{"path": "/in/x", "tags": ["knit#other:1"]}])
    assert "twice" in advice(inputs=[{"path": "/in/x", "tags": ["knit#id:a", "knit#id:b"]}])
    pinned = parse_plan_spec(doc(inputs=[{"path": "/in/x", "tags": ["knit#id:abc"]}]))
    assert pinned.inputs[0].tags == [Tag("knit#id", "abc")]


def test_rule7_outputs_and_log_carry_no_system_tags():
    assert "system tags" in advice(outputs=[{"path": "/out/m", "tags": ["knit#id:x"]}])
    assert "system tags" in advice(log={"tags": ["knit#timestamp:2024-01-01T00:00:00Z"]})


@pytest.mark.parametrize(
    "a, b", [("/in/data", "/in/data"), ("/in", "/in/data"), ("/in/data", "/in/data2"), ("/out/m", "/out/m/x")]
)
def test_rule8_overlapping_mountpoints(a, b):
    msg = advice(inputs=[{"path": a, "tags": ["x:y"]}], outputs=[{"path": b, "tags": []}])
    assert msg.startswith("plan spec is invalid: mountpoints are overlapped: ")


def test_unknown_fields_are_refused_in_the_api_but_ignored_in_yaml():
    assert "unknown fields: annotation" in advice(annotation=["a=b"])
    assert parse_plan_spec(doc(annotation=["a=b"]), strict=False).annotations == []


def test_resources_are_canonical_and_yaml_numbers_are_strings():
    spec = parse_plan_spec(doc(resources={"cpu": 2.5, "memory": "1.5Gi", "nvidia.com/gpu": 1}))
    assert spec.resources == {"cpu": "2500m", "memory": "1536Mi", "nvidia.com/gpu": "1"}


def test_equivalent_plans_share_a_hash_whatever_their_mutable_fields():
    a = parse_plan_spec(doc(active=False, resources={"cpu": "2"}, annotations=["a=b"], service_account="sa"))
    b = parse_plan_spec(doc())
    assert plan_hash(a) == plan_hash(b)
    assert plan_hash(parse_plan_spec(doc(args=["--epochs", "3"]))) != plan_hash(b)
    assert plan_hash(parse_plan_spec(doc(on_node={"may": ["a=b"]}))) != plan_hash(b)
