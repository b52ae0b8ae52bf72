"""The only module that imports matplotlib (lazily): the helpers every experiment's figure uses.

Figures are plain ``matplotlib.figure.Figure`` objects, so drawing never selects or switches the
process's matplotlib backend; files are written atomically (`results.atomic_file`).
"""

from pathlib import Path

from sublim_jax.io.results import atomic_file


def new_figure(**kwargs):
    """A matplotlib ``Figure`` not registered with pyplot: no backend is chosen or switched for
    the process, and nothing needs closing."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save(fig, out_dir: Path, stem: str) -> list[Path]:
    """``fig`` as ``out_dir/stem.pdf`` and ``.png``, each written atomically."""
    paths = [out_dir / f"{stem}.pdf", out_dir / f"{stem}.png"]
    for path in paths:
        with atomic_file(path, "wb") as fh:
            fig.savefig(fh, format=path.suffix[1:], dpi=150, bbox_inches="tight")
    return paths


def size_note(results: dict, reference: str = "the full-size setup") -> str:
    """A second title line for a run smaller than ``reference`` (its preset and the flags that
    shrink it), so that its numbers are not read against the full-size ones."""
    reduced = results.get("reduced") or []
    if not reduced:
        return ""
    shown = ", ".join(reduced[:4]) + (", …" if len(reduced) > 4 else "")
    preset = results.get("preset")
    return f"\n{preset} preset, reduced size ({shown}): smaller than {reference}"
