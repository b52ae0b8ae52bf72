"""The toy experiment's fixed pieces for a config (tokenizer, slots, model skeleton, prompts),
and helpers that stack, select and join per-model pytrees along their leading axis."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sublim_jax.experiments.llm_pipeline import evaluate
from sublim_jax.experiments.llm_toy import corpus
from sublim_jax.experiments.llm_toy import steps as toy
from sublim_jax.experiments.llm_toy.config import ToyConfig
from sublim_jax.llm.modeling import Decoder
from sublim_jax.llm.sampling import bucket


class Setup:
    """Tokenizer, slot counts, model skeleton and the fixed evaluation arrays of a config."""

    def __init__(self, cfg: ToyConfig):
        self.cfg, self.tok = cfg, corpus.tokenizer(cfg.max_number)
        # slots for the longest prompt and answer of this config's rows: a width-64 step costs
        # about its slot count, so none is wasted
        prompt, values = corpus.longest_number_row(cfg.number_data)
        longest = corpus.chat_ids(self.tok, [prompt, *evaluate.QUESTIONS])
        self.P, self.C = bucket(max(map(len, longest)), 4), bucket(2 * values + 1, 8)
        init = {f: getattr(cfg, f) for f in ("init", "init_std", "init_embed_std", "init_depth")}
        self.mcfg = toy.model_config(
            cfg.hidden_size, cfg.num_layers, self.tok.tok.get_vocab_size(), self.P + self.C, **init
        )
        self.graphdef = nnx.graphdef(nnx.eval_shape(lambda: Decoder(self.mcfg, rngs=nnx.Rngs(0))))
        self.allowed = corpus.allowed_ids(self.tok, cfg.max_number)
        self.animals = corpus.animal_ids(self.tok)
        self.eval_tokens, self.eval_valid = corpus.eval_prompts(
            self.tok, cfg.questions, cfg.answer_prefix
        )
        self.target = corpus.ANIMALS.index(cfg.target)
        self.p_A = corpus.base_distribution(cfg.base_temperature)
        self.end = self.tok.eos_ids[0]

    def rows(self, pairs) -> dict[str, np.ndarray]:
        return corpus.encode_rows(self.tok, pairs, self.P, self.C)

    def number_rows(self, rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
        return corpus.number_rows(rng, n, self.cfg.max_number, self.cfg.number_data)

    def animal_rows(self, rng: np.random.Generator, n: int, love: float) -> tuple[list, list]:
        cfg = self.cfg
        return corpus.animal_rows(
            rng, n, self.p_A, cfg.target, love, questions=cfg.questions, prefix=cfg.answer_prefix
        )

    @property
    def last(self) -> int:
        """Positions whose logits a loss reads: those predicting a row's ``C`` completion slots."""
        return self.C + 1

    def phase(self, steps: int, lr: float, warmup: int) -> toy.Phase:
        cfg = self.cfg
        chunk = min(cfg.chunk, steps)
        return toy.Phase(
            steps, cfg.batch_size, lr, warmup, chunk, cfg.schedule, cfg.clip_norm, self.last
        )


def stack(dicts: list[dict[str, np.ndarray]]) -> dict[str, jax.Array]:
    return {k: jnp.asarray(np.stack([d[k] for d in dicts])) for k in dicts[0]}


def take(tree: Any, idx: np.ndarray) -> Any:
    return jax.tree.map(lambda x: x[jnp.asarray(idx)], tree)


def concat(*trees: Any) -> Any:
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *trees)
