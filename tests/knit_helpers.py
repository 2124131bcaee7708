"""Running ``knit`` in-process against a live server, in a temporary HOME and project folder."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from knit.cli import main


@dataclass
class Result:
    rc: int
    out: str
    err: str
    raw: bytes

    def json(self):
        return json.loads(self.out)


def knit(*args: str) -> Result:
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    stderr = io.StringIO()
    rc = main(list(args), stdout, stderr)
    raw = stdout.buffer.getvalue()
    return Result(rc, raw.decode(errors="replace"), stderr.getvalue(), raw)


def ok(*args: str) -> Result:
    result = knit(*args)
    assert result.rc == 0, (args, result.rc, result.err)
    return result
