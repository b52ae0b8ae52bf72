"""The theorem experiment's config: its presets and checks."""

import dataclasses

import numpy as np

from sublim_jax.core import mlp


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
        checks = [
            (
                self.seeds >= 2,
                f"seeds must be ≥ 2 (different init needs a partner), got {self.seeds}",
            ),
            (self.eps_min > 0, f"eps-min must be > 0, got {self.eps_min}"),
            (self.eps_max > self.eps_min, "eps-max must be larger than eps-min"),
            (self.n_eps >= 2, f"n-eps must be ≥ 2, got {self.n_eps}"),
            (self.eps > 0, f"eps must be > 0, got {self.eps}"),
            (self.alpha > 0, f"alpha must be > 0, got {self.alpha}"),
            (min(self.n_teacher, self.n_noise, self.hidden, self.n_aux) >= 1, "sizes must be ≥ 1"),
            (self.n_teacher <= 60_000, "n-teacher must be ≤ 60000 (the MNIST training set)"),
            (
                self.activation in mlp.ACTIVATIONS,
                f"activation must be one of {list(mlp.ACTIVATIONS)}",
            ),
            (self.chunk >= 1, f"chunk must be ≥ 1, got {self.chunk}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self
