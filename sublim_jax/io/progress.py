"""Progress bars, one protocol: a ``Progress`` is called as ``progress(desc, total)`` and returns
a context manager with ``update(n)``. Runs take ``progress=None`` for no bar."""

import sys
from collections.abc import Callable
from typing import Any

Progress = Callable[[str, int], Any]


class NoBar:
    """A bar that shows nothing (``progress=None``)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def bar(progress: Progress | None, desc: str, total: int):
    """``progress(desc, total)``, or a `NoBar` when there is no ``progress``."""
    return progress(desc, total) if progress else NoBar()


def tqdm_bars(unit: str) -> Progress:
    """A ``Progress`` drawing tqdm bars on stderr, counting ``unit``s."""

    def make(desc: str, total: int):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)

    return make
