"""What a sweep is made of: its grid points (`Point`), the named grid itself (`Sweep`), and the
number parsing the points' tokens share (`grid` defines the sweeps and their parsers). No I/O."""

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple


class Point(NamedTuple):
    """One grid point; ``None`` keeps the base config's value."""

    label: str
    value: float | str  # the point's x-axis value in figures and results
    a_L: tuple[float, ...] = (1.0, 1.0, 1.0)  # weight of the teacher's init, per layer
    b_L: tuple[float, ...] = (0.0, 0.0, 0.0)  # weight of the partner's init, per layer
    optimizer: str = "adam"
    lr: float | None = None
    n_aux: int | None = None
    loss: str = "kl"  # the students' loss on their logit subset: kl, mse or hard
    temperature: float | None = None  # the KL's temperature (None: the config's)
    inputs: str = "uniform"  # uniform, gaussian, a dataset's images or shuffled-DATASET
    defence: str = "none"  # one of DEFENCES
    strength: float = 0.0  # the defence's λ, σ, q, τ, k, f or β (see DEFENCES)
    epochs: int | None = None  # student epochs (None: the config's)
    hidden: int | None = None  # architecture: hidden width (teachers and students)
    depth: int | None = None  # architecture: hidden layers
    n_noise: int | None = None  # dose: the students' noise images (the model's first n)
    epochs_student: int | None = None  # dose: the students' epochs
    teacher_epochs: float | None = None  # teacher-strength: teacher training, in epochs
    teacher_steps: int | None = None  # teacher-strength: teacher training, in Adam steps
    track: bool = False  # alignment-over-training: record per-step alignment curves
    batch_size: int | None = None  # batch-size: the students' batch (teachers keep the config's)
    student_steps: int | None = None  # batch-size: train exactly this many student steps


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A named grid: its points' parser, and its grid text per preset."""

    description: str
    parse: Callable[[str], Point]
    grid: str  # the default preset's grid (and the paper preset's, unless ``paper_grid``)
    smoke_grid: str
    check: Callable[[tuple[Point, ...]], None] | None = None  # raises on a bad grid as a whole
    paper_grid: str | None = None  # the paper preset's grid, when not ``grid``


def number(token: str, kind: type = float):
    """``token`` as a ``kind``; ValueError naming the token when it is not one."""
    try:
        return kind(token)
    except ValueError:
        raise ValueError(f"not a {kind.__name__}: {token!r}") from None


def finite(token: str, kind: type = float, low: float = 0.0, high: float = math.inf):
    """The number after ``=`` in ``token``, finite and in [low, high]."""
    v = number(token.partition("=")[2], kind)
    if not (math.isfinite(v) and low <= v <= high):
        raise ValueError(f"the value must be finite and in [{low:g}, {high:g}], got {token!r}")
    return v


def ints(token: str, sep: str, what: str, n_max: int) -> tuple[int, ...]:
    """The integers of ``token`` split at ``sep``, each in 1..n_max."""
    values = tuple(number(t, int) for t in token.split(sep))
    if not all(1 <= v <= n_max for v in values):
        raise ValueError(f"{what} must be in 1..{n_max}, got {token!r}")
    return values
