import pytest

from knitfab.errors import BadRequest
from knitfab.tags import Tag, as_strings, normalize, parse_tag, system_tags, tag_from_json, user_tag
from knitfab.times import format_ts, parse_duration, parse_rfc3339


def test_a_tag_splits_at_the_first_colon_and_trims():
    assert parse_tag(" description : 2 layer CNN: v2 ") == Tag("description", "2 layer CNN: v2")


def test_a_tag_without_colon_is_refused_with_knitfabs_words():
    with pytest.raises(BadRequest) as e:
        parse_tag("nocolon")
    assert e.value.reason == "tag parse error: nocolon :no key"
    assert e.value.advice == "each tag should be formatted as KEY:VALUE"


def test_tags_in_json_may_be_strings_or_objects():
    assert tag_from_json("a:b") == tag_from_json({"key": "a", "value": "b"}) == Tag("a", "b")
    for bad in [{"key": "a"}, {"key": "a", "value": 1}, {"key": "a", "value": "b", "x": 1}, 3, ":v"]:
        with pytest.raises(BadRequest):
            tag_from_json(bad)


def test_system_tag_values_are_checked():
    with pytest.raises(BadRequest):
        parse_tag("knit#timestamp:yesterday")
    with pytest.raises(BadRequest):
        parse_tag("knit#transient:maybe")
    assert parse_tag("knit#transient:failed").is_system


def test_users_cannot_touch_system_tags():
    with pytest.raises(BadRequest) as e:
        user_tag(parse_tag("knit#id:x"))
    assert e.value.status == 400


def test_tag_sets_are_deduplicated_and_sorted_by_bytes():
    tags = [Tag("mode", "train"), Tag("format", "mnist"), Tag("knit#id", "x"), Tag("format", "mnist"), Tag("é", "1")]
    assert as_strings(tags) == ["format:mnist", "knit#id:x", "mode:train", "é:1"]


def test_timestamps_are_deduplicated_by_instant():
    tags = [Tag("knit#timestamp", "2024-03-06T09:25:16.586Z"), Tag("knit#timestamp", "2024-03-06T18:25:16.586+09:00")]
    assert normalize(tags) == [Tag("knit#timestamp", "2024-03-06T09:25:16.586+00:00")]


def test_system_tags_of_a_data():
    assert as_strings(system_tags("k1", None, "processing")) == ["knit#id:k1", "knit#transient:processing"]
    stamp = parse_rfc3339("2024-03-06T09:25:16Z")
    assert as_strings(system_tags("k1", stamp, None)) == ["knit#id:k1", "knit#timestamp:2024-03-06T09:25:16+00:00"]


@pytest.mark.parametrize(
    "text, printed",
    [
        ("2024-03-06T09:25:16.586Z", "2024-03-06T09:25:16.586+00:00"),
        ("2024-03-06T09:25:16.5Z", "2024-03-06T09:25:16.5+00:00"),
        ("2024-03-06T09:25:16.000Z", "2024-03-06T09:25:16+00:00"),
        ("2024-03-06T18:25:16.120+09:00", "2024-03-06T09:25:16.12+00:00"),
        ("2024-03-06T18:25:16.120 09:00", "2024-03-06T09:25:16.12+00:00"),
    ],
)
def test_timestamps_print_in_gos_layout(text, printed):
    assert format_ts(parse_rfc3339(text)) == printed


@pytest.mark.parametrize("text", ["2024-03-06", "2024-03-06T09:25Z", "2024-13-06T09:25:16Z", "yesterday"])
def test_strict_rfc3339_refuses_loose_forms(text):
    with pytest.raises(BadRequest):
        parse_rfc3339(text)


@pytest.mark.parametrize(
    "text, micros",
    [("300ms", 300_000), ("1.5h", 5_400_000_000), ("2h45m", 9_900_000_000), ("24h0m0s", 86_400_000_000), ("0", 0)],
)
def test_durations_use_go_syntax(text, micros):
    assert parse_duration(text) == micros


@pytest.mark.parametrize("text", ["", "1", "h", "1d", "1h x", "."])
def test_bad_durations_are_refused(text):
    with pytest.raises(BadRequest):
        parse_duration(text)
