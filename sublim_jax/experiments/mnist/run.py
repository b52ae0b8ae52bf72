"""All seeds of the transfer experiment: keys, chunks, the device mesh, finiteness, resume hooks.

Seeds run as ``jit(vmap(...))`` in chunks of ``cfg.chunk`` (bounded memory on CPU); the seed axis
of every per-seed array is sharded over a 1-D mesh of all devices, so jit splits each chunk
across them. Phase 1 trains every teacher, phase 2 every model's four students. Seed i's keys
are ``fold_in(root, i)``, so its numbers do not depend on the chunking or the device count.
``store`` (optional, duck-typed: ``load(name) -> dict | None``, ``save(name, arrays)``) caches
finished chunks for ``--resume``; this module itself writes nothing.
Dims: S seeds in a chunk, E epochs, T steps per epoch, C logits.
"""

import dataclasses
import functools
import math
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from sublim_jax.core import stats
from sublim_jax.experiments.mnist.config import CONDITIONS, STUDENTS, TransferConfig
from sublim_jax.experiments.mnist.steps import (
    accuracy,
    init_state,
    make_distill,
    make_noise,
    make_train_teacher,
    teacher_logits,
)
from sublim_jax.io.progress import Progress
from sublim_jax.io.progress import bar as progress_bar


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the condition, seed and step."""


class _NoStore:
    def load(self, name: str) -> None:
        return None

    def save(self, name: str, arrays: dict) -> None:
        pass


CPU_CHUNK = 5  # seeds per chunk on CPU when cfg.chunk == 0: ~0.5 GB of noise, full matmul speed


def plan(cfg: TransferConfig, n_devices: int, platform: str = "cpu") -> tuple[int, int]:
    """(seeds per chunk, number of chunks): equal chunks, each a multiple of the device count."""
    per = cfg.chunk or (CPU_CHUNK if platform == "cpu" else cfg.seeds)
    per = min(per, cfg.seeds)
    n_chunks = math.ceil(cfg.seeds / per)
    per = math.ceil(math.ceil(cfg.seeds / n_chunks) / n_devices) * n_devices
    return per, n_chunks


def seed_keys(cfg: TransferConfig, n: int) -> dict:
    """Per-seed keys for seeds 0..n−1 and the different-init partner σ (a derangement)."""
    root = jax.random.key(cfg.seed)
    names = ("init", "teacher_data", "student_data", "noise")
    *roots, perm_key = jax.random.split(root, len(names) + 1)
    fold = jax.vmap(jax.random.fold_in, in_axes=(None, 0))
    keys = {name: fold(r, jnp.arange(n)) for name, r in zip(names, roots, strict=True)}
    partner = np.arange(n)
    partner[: cfg.seeds] = stats.derangement(cfg.seeds, key=perm_key)
    keys["partner"] = partner
    return keys


def check_finite(loss_SxT: np.ndarray, condition: str, first_seed: int, n_real: int, step0: int):
    """Raise `NonFiniteLossError` at the first non-finite loss of a real (unpadded) seed."""
    bad = ~np.isfinite(loss_SxT[:n_real])
    if bad.any():
        s, t = np.argwhere(bad)[0]
        raise NonFiniteLossError(
            f"non-finite loss ({loss_SxT[s, t]}) in condition {condition}, "
            f"seed {first_seed + s}, step {step0 + t}"
        )


@functools.lru_cache(maxsize=8)
def programs(cfg: TransferConfig) -> dict[str, Callable]:
    """The jitted, seed-vmapped programs; cached per config, so repeated runs reuse compilations.

    Callers pass ``cfg`` with the fields the programs ignore (seeds, chunk, seed) normalised.
    """
    teacher_epoch, _ = make_train_teacher(cfg)
    student_epoch, _ = make_distill(cfg)
    return {
        "teacher_epoch": jax.jit(
            jax.vmap(teacher_epoch, in_axes=(0, 0, None, None, None)), donate_argnums=0
        ),
        "teacher_init": jax.jit(jax.vmap(lambda key: init_state(cfg, key=key))),
        "student_epoch": jax.jit(
            jax.vmap(student_epoch, in_axes=(0, 0, None, 0, 0)), donate_argnums=0
        ),
        "noise": jax.jit(jax.vmap(lambda key: make_noise(cfg, key=key))),
        "teacher_logits": jax.jit(jax.vmap(partial(teacher_logits, cfg))),
        "accuracy": jax.jit(jax.vmap(accuracy, in_axes=(0, None, None))),
    }


class Runner:
    """Seeds in chunks over a device mesh: the teachers of every chunk (resumable through
    ``store``), then the students. The sweeps subclass it to run their own students."""

    def __init__(self, cfg: TransferConfig, data: dict, store, progress: Progress | None):
        self.cfg, self.store, self.progress = cfg, store or _NoStore(), progress
        devices = np.asarray(jax.devices())
        self.mesh = Mesh(devices, ("seeds",))
        self.per, self.n_chunks = plan(cfg, devices.size, jax.default_backend())
        self.keys = seed_keys(cfg, self.per * self.n_chunks)
        rep = NamedSharding(self.mesh, P())
        self.data = {k: jax.device_put(v, rep) for k, v in data.items()}
        self.jit = programs(dataclasses.replace(cfg, seeds=2, chunk=0, seed=0))
        shapes = jax.eval_shape(lambda: init_state(cfg, key=jax.random.key(0)).params)
        self.treedef = jax.tree.structure(shapes)  # traced, not run: nothing to compile

    def shard(self, tree):
        return jax.device_put(tree, NamedSharding(self.mesh, P("seeds")))

    def chunks(self):
        for c in range(self.n_chunks):
            start = c * self.per
            yield start, slice(start, start + self.per), min(self.per, self.cfg.seeds - start)

    def phase(self, name: str, epochs: int, train_chunk: Callable) -> list[dict]:
        """``train_chunk(start, sl, n_real, bar) -> arrays`` per chunk, unless cached."""
        bar, out = progress_bar(self.progress, name, self.n_chunks * epochs), []
        for start, sl, n_real in self.chunks():
            key = f"{name}_{start:05d}_{start + self.per:05d}"
            arrays = self.store.load(key)
            if arrays is None:
                arrays = train_chunk(start, sl, n_real, bar)
                self.store.save(key, arrays)
            else:
                bar.update(epochs)
            out.append(arrays)
        bar.close()
        return out

    def epochs(self, epoch: Callable, state, args, n: int, check: Callable, bar, tail=()):
        """Run ``n`` epochs, checking every step's loss on the host; per-epoch mean losses
        ``loss_SxE`` (``tail`` is the shape of one step's loss per seed, for n = 0)."""
        means = []
        for e in range(n):
            state, loss_SxT = epoch(state, args[0], e, *args[1:])
            loss_SxT = np.asarray(loss_SxT)
            check(loss_SxT, e * loss_SxT.shape[1])
            means.append(loss_SxT.mean(1))
            bar.update(1)
        return state, np.stack(means, 1) if means else np.zeros((self.per, 0, *tail))

    def accuracy(self, params) -> np.ndarray:
        return np.asarray(self.jit["accuracy"](params, self.data["x_test"], self.data["y_test"]))

    def teacher_chunk(self, start: int, sl: slice, n_real: int, bar) -> dict:
        state = self.jit["teacher_init"](self.shard(self.keys["init"][sl]))
        reference = self.accuracy(state.params)
        data_key = self.shard(self.keys["teacher_data"][sl])
        check = lambda l_SxT, step0: check_finite(l_SxT, "teacher", start, n_real, step0)  # noqa: E731
        args = (data_key, self.data["x_train"], self.data["y_train"])
        epoch = self.jit["teacher_epoch"]
        state, loss_SxE = self.epochs(epoch, state, args, self.cfg.epochs_teacher, check, bar)
        leaves = jax.tree.leaves(state.params)
        return {
            **{f"param_{i}": np.asarray(x) for i, x in enumerate(leaves)},
            "acc_teacher": self.accuracy(state.params),
            "acc_reference": reference,
            "loss_SxE": loss_SxE,
        }

    def student_chunk(self, start: int, sl: slice, n_real: int, bar, teacher: dict) -> dict:
        leaves = [teacher[f"param_{i}"] for i in range(self.treedef.num_leaves)]
        params_T = self.shard(jax.tree.unflatten(self.treedef, leaves))
        u_SxNxD = self.jit["noise"](self.shard(self.keys["noise"][sl]))
        y_SxNxC = self.jit["teacher_logits"](params_T, u_SxNxD)
        diff_key = self.shard(self.keys["init"][self.keys["partner"][sl]])
        same_key = self.shard(self.keys["init"][sl])
        # init_students' four states, from the teachers' init program (one compilation for both
        # phases); each state its own buffers, since the student epoch donates them
        init = self.jit["teacher_init"]
        states = (init(same_key), init(same_key), init(diff_key), init(diff_key))

        def check(loss_SxTx4, step0):
            for k, student in enumerate(STUDENTS):
                check_finite(loss_SxTx4[..., k], f"student_{student}", start, n_real, step0)

        args = (self.shard(self.keys["student_data"][sl]), u_SxNxD, y_SxNxC)
        epoch = self.jit["student_epoch"]
        states, loss_SxEx4 = self.epochs(
            epoch, states, args, self.cfg.epochs_student, check, bar, tail=(len(STUDENTS),)
        )
        acc_Sx4 = np.stack([self.accuracy(s.params) for s in states], axis=1)
        return {"acc_Sx4": acc_Sx4, "loss_SxEx4": loss_SxEx4}

    def teachers(self) -> list[dict]:
        return self.phase("teachers", self.cfg.epochs_teacher, self.teacher_chunk)

    def students(self, teachers: list[dict]) -> list[dict]:
        by_start = {c * self.per: t for c, t in enumerate(teachers)}

        def chunk(start, sl, n_real, bar):
            return self.student_chunk(start, sl, n_real, bar, by_start[start])

        return self.phase("students", self.cfg.epochs_student, chunk)


def run(
    cfg: TransferConfig,
    x_train_NxD: np.ndarray,
    y_train_N: np.ndarray,
    x_test_NxD: np.ndarray,
    y_test_N: np.ndarray,
    *,
    store=None,
    progress: Callable | None = None,
) -> dict:
    """Test accuracy per condition and seed (numpy, ``CONDITIONS`` order) and loss curves."""
    cfg.validate()
    data = {
        "x_train": jnp.asarray(x_train_NxD[: cfg.n_train], jnp.float32),
        "y_train": jnp.asarray(y_train_N[: cfg.n_train], jnp.int32),
        "x_test": jnp.asarray(x_test_NxD[: cfg.n_test], jnp.float32),
        "y_test": jnp.asarray(y_test_N[: cfg.n_test], jnp.int32),
    }
    runner = Runner(cfg, data, store, progress)
    teachers = runner.teachers()
    students = runner.students(teachers)
    cat = lambda chunks, k: np.concatenate([c[k] for c in chunks])[: cfg.seeds]  # noqa: E731
    acc_Sx4 = cat(students, "acc_Sx4")
    accuracy_ = {
        "reference": cat(teachers, "acc_reference"),
        "teacher": cat(teachers, "acc_teacher"),
        **{f"student_{s}": acc_Sx4[:, k] for k, s in enumerate(STUDENTS)},
    }
    assert tuple(accuracy_) == CONDITIONS
    loss_SxEx4 = cat(students, "loss_SxEx4")
    return {
        "accuracy": accuracy_,
        "loss_per_epoch": {
            "teacher": cat(teachers, "loss_SxE"),
            **{f"student_{s}": loss_SxEx4[..., k] for k, s in enumerate(STUDENTS)},
        },
        "partner": runner.keys["partner"][: cfg.seeds],
        "devices": len(jax.devices()),
        "seeds_per_chunk": runner.per,
    }
