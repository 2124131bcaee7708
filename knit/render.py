"""Graphs out: DOT text on stdout, or a picture when ``-o FILE.png|svg|pdf`` is given.

Rendering uses Graphviz's ``dot`` program (Debian package ``graphviz``); without it, the DOT
text is saved instead and the message says how to install Graphviz.
"""

from __future__ import annotations

from pathlib import Path

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".dot": None, ".gv": None}
INSTALL = "install Graphviz to draw it (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz)"


def write_graph(ctx, dot: str, output: str | None) -> int:
    if output is None:
        ctx.out(dot)
        return 0
    target = Path(output)
    if target.suffix not in FORMATS:
        from .context import UsageError

        raise UsageError(f"-o wants a .png, .svg, .pdf or .dot file, not {output}", ctx.args.parser)
    fmt = FORMATS[target.suffix]
    import shutil  # here: only drawing a picture needs them, and `knit data find` starts without them
    import subprocess

    if fmt is None:
        target.write_text(dot)
    elif shutil.which("dot") is None:
        fallback = target.with_suffix(".dot")
        fallback.write_text(dot)
        ctx.log(f"Graphviz is not installed: saved the graph as {fallback}; {INSTALL}")
        return 1
    else:
        subprocess.run(["dot", f"-T{fmt}", "-o", str(target)], input=dot.encode(), check=True)
    ctx.log(f"the graph is saved to {target}")
    return 0
