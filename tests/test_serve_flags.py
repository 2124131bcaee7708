"""``knitfab serve``'s flag errors are argparse's: the usage, one line, exit 2 (no traceback)."""

from __future__ import annotations

import pytest

from knitfab.__main__ import main


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--capacity", "cpu"], "capacity must be TYPE=QUANTITY"),
        (["--capacity", "cpu=lots"], "--capacity"),
        (["--cert", "cert.pem"], "--cert and --key go together"),
        (["--local-image", "busybox:1=/no/such/dir"], "--local-image wants IMAGE:TAG=DIR"),
        (["--max-data-size", "-1"], "--max-data-size"),
    ],
)
def test_a_bad_serve_flag_is_a_usage_error(tmp_path, capsys, flags, said):
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--data-dir", str(tmp_path / "d"), *flags])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.startswith("usage: knitfab serve") and said in err and "Traceback" not in err
