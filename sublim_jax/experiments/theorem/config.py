"""The theorem experiment's config: its presets and checks."""

import dataclasses
from typing import ClassVar

import numpy as np

from sublim_jax.core import mlp
from sublim_jax.io import flags


@dataclasses.dataclass(frozen=True)
class TheoremConfig:
    seeds: int = dataclasses.field(default=100, metadata={"help": "models (seeds)"})
    eps_min: float = dataclasses.field(default=1e-8, metadata={"help": "smallest teacher step ε"})
    eps_max: float = dataclasses.field(default=1e-1, metadata={"help": "largest teacher step ε"})
    n_eps: int = dataclasses.field(default=15, metadata={"help": "ε values, log-spaced"})
    eps: float = dataclasses.field(default=1e-3, metadata={"help": "ε for the per-seed study"})
    alpha: float = dataclasses.field(default=1e-2, metadata={"help": "student step size α"})
    n_teacher: int = dataclasses.field(default=1024, metadata={"help": "MNIST images in L_T"})
    n_noise: int = dataclasses.field(default=1024, metadata={"help": "noise images per student"})
    hidden: int = dataclasses.field(default=256, metadata={"help": "width of both hidden layers"})
    n_aux: int = dataclasses.field(default=3, metadata={"help": "auxiliary logits (L_S reads)"})
    activation: str = dataclasses.field(default="relu", metadata={"help": "relu, tanh or gelu"})
    chunk: int = dataclasses.field(default=25, metadata={"help": "seeds per compiled batch"})
    seed: int = dataclasses.field(default=0, metadata={"help": "root random seed"})

    @classmethod
    def default(cls) -> "TheoremConfig":
        return cls()

    @classmethod
    def smoke(cls) -> "TheoremConfig":
        return cls(seeds=4, n_eps=7, n_teacher=64, n_noise=64, hidden=32, chunk=4)

    @property
    def sizes(self) -> tuple[int, ...]:
        return (784, self.hidden, self.hidden, 10 + self.n_aux)

    def eps_grid(self) -> np.ndarray:
        return np.logspace(np.log10(self.eps_min), np.log10(self.eps_max), self.n_eps)

    def validate(self) -> "TheoremConfig":
        if self.seeds < 2:
            raise ValueError(
                f"--seeds must be ≥ 2 (different init needs a partner), got {self.seeds}"
            )
        flags.check_fields(self, self.RULES)
        if self.eps_max <= self.eps_min:
            raise ValueError(f"--eps-max must be larger than --eps-min, got {self.eps_max}")
        if self.activation not in mlp.ACTIVATIONS:
            raise ValueError(
                f"--activation must be one of {', '.join(mlp.ACTIVATIONS)}, got {self.activation!r}"
            )
        return self

    RULES: ClassVar[dict[str, str]] = {
        "eps_min": "> 0",
        "n_eps": ">= 2",
        "eps": "> 0",
        "alpha": "> 0",
        "n_teacher": "in 1..60000",
        "n_noise": ">= 1",
        "hidden": ">= 1",
        "n_aux": ">= 1",
        "chunk": ">= 1",
    }
