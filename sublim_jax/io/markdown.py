"""Generated blocks of Markdown files (README, docs, FINDINGS): each ``BEGIN generated: NAME``
block's body is rewritten from results; the prose around it stays the author's."""

import re
from collections.abc import Mapping
from pathlib import Path

from sublim_jax.io import results

BLOCK = re.compile(
    r"(<!-- BEGIN generated: (?P<name>[\w-]+) -->\n)(.*?)(<!-- END generated -->)", re.S
)


def fill(text: str, blocks: Mapping[str, str]) -> tuple[str, list[str]]:
    """``text`` with each ``BEGIN generated: NAME`` block's body replaced by ``blocks[NAME]``;
    also returns the names of blocks that have no value (left as they are)."""
    missing: list[str] = []

    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in blocks:
            missing.append(name)
            return m.group(0)
        return m.group(1) + blocks[name].rstrip("\n") + "\n" + m.group(4)

    return BLOCK.sub(sub, text), missing


def refresh(path: Path, blocks: Mapping[str, str], check: bool = False) -> int:
    """Rewrite the generated blocks of the Markdown file ``path`` (atomically, only if changed)
    and print what happened; with ``check``, write nothing and return 1 when it is stale."""
    text = path.read_text()
    new, missing = fill(text, blocks)
    stale = new != text
    if check:
        print(f"{path.name} is {'out of date' if stale else 'up to date'}")
        return int(stale)
    if stale:
        results.write_text(path, new)
    done = "rewritten" if stale else "unchanged"
    print(f"{path.name}: {done}; other blocks: {missing or 'none'}")
    return 0
