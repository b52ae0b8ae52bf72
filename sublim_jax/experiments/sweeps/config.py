"""The sweeps' config: the experiment's fields with the sweep presets (smoke, default, paper)."""

import dataclasses

from sublim_jax.experiments.mnist.config import TransferConfig


@dataclasses.dataclass(frozen=True)
class SweepConfig(TransferConfig):
    """The experiment's config with the sweep presets (fewer seeds by default, for a 2-core CPU;
    ≥ 50 for ``paper``, on a GPU); the CLI maps its flags onto it."""

    @classmethod
    def smoke(cls) -> "SweepConfig":
        return cls(
            seeds=2, epochs_teacher=2, epochs_student=2, batch_size=128, hidden=32,
            n_train=4096, n_test=1000, n_noise=2048, lr=1e-3, chunk=2,
        )  # fmt: skip

    @classmethod
    def default(cls) -> "SweepConfig":
        """5 seeds and half the experiment's noise images (5 epochs of 30,000), so that every
        default grid fits about an hour on 2 cores; ``dose`` shows what the full 60,000 add
        (aux-only transfer grows with image-epochs: ~0.31 at 30,000 × 5, 0.56 at 60,000 × 5)."""
        return cls(seeds=5, n_noise=30_000)

    @classmethod
    def paper(cls) -> "SweepConfig":
        return cls(seeds=50)
