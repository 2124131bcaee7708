"""``reply`` writes with orjson exactly the bytes ``json.dumps`` wrote (api/web.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from helpers import push

from knitfab.api import render
from knitfab.api.web import compact_json
from knitfab.store import data


def by_json(body: object) -> bytes:
    return (json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def as_bytes(text: bytes | str) -> bytes:
    return text if isinstance(text, bytes) else text.encode()


AWKWARD = "".join(map(chr, range(0x80))) + 'é漢字\u2028\u2029\U0001f600\ufeff\x7f"\\/'


@pytest.mark.parametrize(
    "body",
    [
        {"z": 1, "a": [True, False, None], "m": {"k": "v"}, "empty": {}, "none": []},  # key order kept
        [AWKWARD, {AWKWARD: AWKWARD}],
        [0, -1, 2**63 - 1, -(2**63), 2**64 - 1],
        [2**64, -(2**63) - 1],  # beyond orjson: json writes them
        {1: "a", False: "b", None: "c"},  # keys json turns into strings
    ],
)
def test_the_same_bytes_as_json(body):
    assert as_bytes(compact_json(body)) == by_json(body)


def test_a_real_answer_with_non_ascii_tags(store):
    for n in range(3):
        push(store, "type:dataset", f"名前:データ{n}", 'quote:"\\')
    body = render.data_list(data.find_data(store))
    assert as_bytes(compact_json(body)) == by_json(body)
    assert isinstance(compact_json(body), bytes)  # orjson wrote it


def test_what_json_refuses_is_still_refused():
    @dataclass
    class Thing:
        x: int

    with pytest.raises(TypeError):
        compact_json({"thing": Thing(1)})
