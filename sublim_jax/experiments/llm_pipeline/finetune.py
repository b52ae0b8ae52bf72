"""Student fine-tuning on kept number pairs (completion-only loss) with resumable Orbax checkpoints.

Dimensions: S micro-steps, B micro-batch rows, T padded length. The data order (``order_SxB``,
one seeded permutation per epoch) is fixed before the first step and saved in every checkpoint
with the trainable parameters, the optimizer state and the step, so a resumed run takes exactly
the steps an uninterrupted one would. Orbax writes each checkpoint to a temporary folder and
renames it when complete.
"""

import math
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx

from sublim_jax.experiments.llm_pipeline.config import PipelineConfig
from sublim_jax.experiments.llm_pipeline.steps import pad_id, prompt_ids
from sublim_jax.llm import training
from sublim_jax.llm.modeling import Decoder
from sublim_jax.llm.sampling import bucket, pack
from sublim_jax.llm.tokenizer import Tokenizer

Pair = tuple[list[int], list[int]]


def student_pairs(
    tok: Tokenizer, rows: Sequence[dict[str, Any]], max_length: int, system: str | None = None
) -> list[Pair]:
    """``(prompt ids, completion ids + EOS)`` without a system prompt (or with ``system``: a
    distillation teacher's view); rows over ``max_length`` tokens are dropped."""
    pairs = [
        (prompt_ids(tok, r["prompt"], system), tok.encode(r["completion"]) + list(tok.eos_ids[:1]))
        for r in rows
    ]
    return [(p, c) for p, c in pairs if len(p) + len(c) <= max_length]


class Distill(NamedTuple):
    """A distillation student's targets: ``logq_KxCxA`` for its ``K`` training pairs (in
    `student_pairs` order), ``C`` completion columns, ``A`` allowed tokens ``allowed_A``."""

    logq_KxCxA: np.ndarray
    allowed_A: np.ndarray


def kl_per_token(logq_KxCxA: np.ndarray, logp_KxCxA: np.ndarray) -> np.ndarray:
    """``KL(q ‖ p)`` at every row and column (float64), both over the same allowed tokens."""
    logq, logp = np.asarray(logq_KxCxA, np.float64), np.asarray(logp_KxCxA, np.float64)
    return np.sum(np.exp(logq) * (logq - logp), axis=-1)


def distill_columns(pairs: Sequence[Pair]) -> int:
    """``C``: the longest completion (+ EOS) rounded up to 16 tokens."""
    return bucket(max(len(c) for _, c in pairs))


def teacher_targets(
    teacher: Decoder,
    tok: Tokenizer,
    rows: Sequence[dict[str, Any]],
    cfg: PipelineConfig,
    allowed_A: np.ndarray,
    *,
    system: str | None,
    batch: int = 32,
) -> Distill:
    """The teacher's next-token log-probabilities over ``allowed_A`` (renormalised) at every
    completion column of the students' pairs of ``rows``, the teacher seeing its own prompt
    (``system``) before the same completion. Rows are kept as `student_pairs` keeps them
    without ``system`` (a row too long only with the system prompt is an error)."""
    plain, seen = student_pairs(tok, rows, 10**9), student_pairs(tok, rows, 10**9, system)
    keep = [i for i, (p, c) in enumerate(plain) if len(p) + len(c) <= cfg.max_length]
    seen = [seen[i] for i in keep]
    C = distill_columns([plain[i] for i in keep])
    length = bucket(max(len(p) + len(c) for p, c in seen) + 1)
    graphdef, state = nnx.split(teacher)
    pad, allowed = pad_id(tok), jax.numpy.asarray(allowed_A, jax.numpy.int32)
    blocks = []
    for i in range(0, len(seen), batch):
        chunk = seen[i : i + batch]
        chunk = chunk + chunk[:1] * (batch - len(chunk))  # one shape: one compile
        packed = pack([p for p, _ in chunk], [c for _, c in chunk], pad, length)
        logq = training.teacher_logprobs(graphdef, state, packed, allowed, C)
        blocks.append(np.asarray(logq)[: len(seen) - i])
    return Distill(np.concatenate(blocks), np.asarray(allowed_A, np.int32))


def train_config(cfg: PipelineConfig, n_pairs: int) -> training.TrainConfig:
    micro = cfg.epochs * math.ceil(n_pairs / cfg.batch_size)
    return training.TrainConfig(
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        total_steps=max(micro // cfg.accum_steps, 1),
        weight_decay=cfg.weight_decay,
        clip_norm=cfg.clip_norm,
        accum_steps=cfg.accum_steps,
        lora_rank=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_targets=tuple(t.strip() for t in cfg.lora_targets.split(",") if t.strip()),
    )


def data_order(n: int, cfg: PipelineConfig, tcfg: training.TrainConfig) -> np.ndarray:
    """``order_SxB``: per epoch a seeded permutation, the last batch topped up from its start;
    ``S`` is a whole number of optimizer steps."""
    rng = np.random.default_rng([cfg.seed, n])
    per_epoch = math.ceil(n / cfg.batch_size) * cfg.batch_size
    rows = [np.resize(rng.permutation(n), per_epoch) for _ in range(cfg.epochs)]
    order_SxB = np.concatenate(rows).reshape(-1, cfg.batch_size)
    return order_SxB[: tcfg.total_steps * tcfg.accum_steps].astype(np.int32)


def padded_length(tok: Tokenizer, rows: Sequence[dict[str, Any]], max_length: int) -> int:
    """The longest pair of ``rows`` rounded up to 16 tokens."""
    pairs = student_pairs(tok, rows, max_length)
    return bucket(max((len(p) + len(c) for p, c in pairs), default=1))


class Checkpoints:
    """An Orbax ``CheckpointManager`` over ``{"state": leaves, "order": order_SxB}``."""

    def __init__(self, folder: str, keep: int = 1):
        import orbax.checkpoint as ocp

        self.ocp = ocp
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(os.path.abspath(folder), options=options)

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, tree: dict[str, Any]) -> None:
        self.manager.save(step, args=self.ocp.args.StandardSave(tree))
        self.manager.wait_until_finished()

    def restore(self, step: int, like: dict[str, Any]) -> dict[str, Any]:
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), like)
        return self.manager.restore(step, args=self.ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self.manager.close()


def train(
    model: Decoder,
    tok: Tokenizer,
    rows: Sequence[dict[str, Any]],
    cfg: PipelineConfig,
    *,
    key: jax.Array,
    checkpoints: Checkpoints | None = None,
    length: int | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    distill: Distill | None = None,
) -> tuple[Decoder, list[dict[str, float]]]:
    """Fine-tune ``model`` (LoRA or full) on ``rows``; resume from ``checkpoints``' latest step.

    ``length`` pads every batch to one shape (pass one value for all students: one compile).
    With ``distill`` (`teacher_targets` of the same rows) the loss is the KL to the teacher's
    restricted distributions at the completion columns, not the cross-entropy of the tokens.

    Returns the trained model and one metrics row per micro-step taken in this call."""
    pairs = student_pairs(tok, rows, cfg.max_length)
    if not pairs:
        raise ValueError(f"no training pair fits max_length={cfg.max_length}")
    tcfg = train_config(cfg, len(pairs))
    model = training.add_lora(model, tcfg, key=key)
    optimizer = training.make_optimizer(tcfg)
    graphdef, frozen, state = training.init(model, tcfg, optimizer)
    order_SxB = data_order(len(pairs), cfg, tcfg)
    leaves, treedef = jax.tree.flatten(state)
    start = checkpoints.latest() if checkpoints else None
    if start is not None:
        restored = checkpoints.restore(start, {"state": leaves, "order": order_SxB})
        state = jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in restored["state"]])
        order_SxB = np.asarray(restored["order"])
    if distill is not None and len(distill.logq_KxCxA) != len(pairs):
        raise ValueError(f"{len(distill.logq_KxCxA)} distillation targets for {len(pairs)} pairs")
    length = length or bucket(max(len(p) + len(c) for p, c in pairs))
    scored = min(length, distill_columns(pairs))  # left padding: completions last
    if distill is not None:
        allowed_A = jax.numpy.asarray(distill.allowed_A)
        scored = distill.logq_KxCxA.shape[1]
        length = max(length, bucket(scored + 1))  # a column before the first target
    pad, every = pad_id(tok), cfg.checkpoint_every * cfg.accum_steps
    metrics = []
    for step in range(start or 0, len(order_SxB)):
        idx = order_SxB[step]
        batch = pack([pairs[i][0] for i in idx], [pairs[i][1] for i in idx], pad, length)
        soft = None
        if distill is not None:
            soft = training.SoftTargets(jax.numpy.asarray(distill.logq_KxCxA[idx]), allowed_A)
        state, m = training.train_step(graphdef, optimizer, state, frozen, batch, scored, soft)
        row = dict(step=step + 1, loss=float(m["loss"]), tokens=float(m["tokens"]))
        metrics.append(row)
        if not np.isfinite(row["loss"]):
            raise FloatingPointError(f"non-finite loss at step {step + 1}")
        if checkpoints and (step + 1) % every == 0:
            checkpoints.save(step + 1, {"state": jax.tree.leaves(state), "order": order_SxB})
        if on_step:
            on_step(step + 1, row)
    return nnx.merge(graphdef, state.params, frozen), metrics
