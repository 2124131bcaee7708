"""Progress bars for push and pull: tqdm on stderr, only when stderr is a terminal."""

from __future__ import annotations

import contextlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up < 100 ms)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@contextlib.contextmanager
def bar(ctx, total: int | None, description: str) -> Iterator[Callable[[int], None] | None]:
    """A callback advancing a bar of ``total`` bytes (None: unknown), or None off a terminal."""
    if not ctx.is_terminal:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, file=ctx.stderr) as shown:
        yield shown.update
