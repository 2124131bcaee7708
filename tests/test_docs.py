"""The documentation stays true: generated man pages are current, links point at files."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAN = [
    ("knit.cli", "build_parser", "knit", "the command line of Knitfab", "knit.1"),
    ("knitfab.__main__", "_parser", "knitfab", "Knitfab server and admin commands", "knitfab.1"),
]


@pytest.mark.parametrize("module, function, prog, description, page", MAN)
def test_the_man_pages_match_the_parsers(module, function, prog, description, page):
    tool = Path(sys.executable).parent / "argparse-manpage"
    if not tool.exists():
        pytest.skip("argparse-manpage is not installed (make install installs it)")
    fresh = subprocess.run(
        [str(tool), "--module", module, "--function", function, "--prog", prog, "--project-name", "Knitfab",
         "--description", description],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout  # fmt: skip
    committed = (ROOT / "docs" / "man" / page).read_text()
    # The first line carries the date it was made.
    assert fresh.splitlines()[1:] == committed.splitlines()[1:], f"run `make man`: docs/man/{page} is stale"


def test_markdown_links_point_at_files():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to a missing {target}"


def test_the_readme_names_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
