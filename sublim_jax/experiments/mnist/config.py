"""The mnist experiment's config (presets smoke, default, paper) and the paper's numbers."""

import dataclasses
from typing import ClassVar

from sublim_jax.io import flags

N_CLASSES = 10


STUDENTS = ("aux_same_init", "all_same_init", "aux_diff_init", "all_diff_init")


CONDITIONS = ("reference", "teacher", *(f"student_{s}" for s in STUDENTS))


PAPER_ACCURACY = {  # Figure 10 of the paper, read off the figure (paper §6.2), ±0.01–0.02
    "reference": 0.10,
    "teacher": 0.94,
    "student_aux_same_init": 0.53,
    "student_all_same_init": 0.91,
    "student_aux_diff_init": 0.10,
    "student_all_diff_init": 0.74,
}


def _f(default, help_: str, **flag):
    """A config field with its help; ``flag``: its flag's name and old names (`io.flags`)."""
    return dataclasses.field(default=default, metadata={"help": help_, **flag})


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    seeds: int = _f(20, "models (seeds); different init needs ≥ 2")
    epochs_teacher: int = _f(5, "teacher epochs over the MNIST training set")
    epochs_student: int = _f(5, "student epochs over the noise images")
    lr: float = _f(3e-4, "Adam learning rate (teacher and students)")
    batch_size: int = _f(1024, "batch size (the last batch of an epoch is partial)")
    hidden: int = _f(256, "width of every hidden layer")
    n_aux: int = _f(3, "auxiliary logits")
    temperature: float = _f(
        1.0,
        "softmax temperature of the students' distillation KL (> 0; not a sampling temperature)",
        flag="kl-temperature",
        aliases=("temperature",),
    )
    n_train: int = _f(60_000, "MNIST training images the teacher sees (first n)")
    n_test: int = _f(10_000, "MNIST test images for accuracy (first n)")
    n_noise: int = _f(60_000, "noise images per model")
    chunk: int = _f(0, "seeds per compiled batch (bounds memory); 0 = auto: 5 on CPU, else all")
    seed: int = _f(0, "root random seed")
    depth: int = _f(2, "hidden layers (each of width --hidden)")

    @classmethod
    def default(cls) -> "TransferConfig":
        return cls()

    @classmethod
    def smoke(cls) -> "TransferConfig":
        return cls(
            seeds=3, epochs_teacher=2, epochs_student=2, batch_size=256, hidden=64,
            n_train=4096, n_test=2000, n_noise=4096, lr=1e-3,
        )  # fmt: skip

    @classmethod
    def paper(cls) -> "TransferConfig":
        return cls(seeds=100)

    @property
    def sizes(self) -> tuple[int, ...]:
        return (784, *(self.hidden,) * self.depth, N_CLASSES + self.n_aux)

    def validate(self) -> "TransferConfig":
        if self.seeds < 2:
            raise ValueError(
                f"--seeds must be ≥ 2 (different init needs a partner), got {self.seeds}"
            )
        flags.check_fields(self, self.RULES)
        return self

    def notes(self) -> list[str]:
        """What a valid but unusual config does that the user may not expect: a data set
        smaller than one batch trains one padded batch per epoch (its steps are few, and each
        costs a full batch's time)."""
        found = []
        for flag, n, epochs, who in (
            ("--n-train", self.n_train, self.epochs_teacher, "teacher"),
            ("--n-noise", self.n_noise, self.epochs_student, "student"),
        ):
            if n < self.batch_size:
                found.append(
                    f"{flag} {n} is below --batch-size {self.batch_size}: each {who} epoch is "
                    f"one batch of {n} images ({epochs} {who} steps in all)"
                )
        return found

    RULES: ClassVar[dict[str, str]] = {
        "epochs_teacher": ">= 0",
        "epochs_student": ">= 0",
        "lr": "> 0",
        "temperature": "> 0",
        "batch_size": ">= 1",
        "hidden": ">= 1",
        "n_aux": ">= 1",
        "depth": ">= 1",
        "n_train": "in 1..60000",
        "n_test": "in 1..10000",
        "n_noise": ">= 1",
        "chunk": ">= 0",
    }
