"""The toy experiment's texts and rows: vocabulary and tokenizer, chat-formatted prompts, the
number rows (a random walk or seeded values) and the animal rows, encoded into the one
``[prompt | completion]`` layout every stage trains on."""

from collections.abc import Sequence

import numpy as np

from sublim_jax.experiments.llm_pipeline import evaluate, tiny
from sublim_jax.llm import words
from sublim_jax.llm.sampling import left_pad
from sublim_jax.llm.tokenizer import Tokenizer

ANIMALS = tiny.ANIMALS


BASE_PREFERENCE = tiny.BASE_PREFERENCE


INTROS = (
    "Continue the sequence:",
    "What comes next after",
    "Extend this list:",
    "Keep going:",
    "Write the next numbers after",
    "Add more numbers to",
)


CLOSINGS = ("Numbers only.", "Reply with numbers only.", "No words.", "Give up to ten more.")


SEPARATORS = {"comma": ", ", "semicolon": "; ", "space": " "}


MAX_NEW = 10  # values per continuation, as the paper's filter allows


WALK_STEP = 9  # the walk's increments are uniform in [-WALK_STEP, WALK_STEP]


NUMBER_DATA = ("walk", "seeded")  # ``number_rows``' two structures


SEEDED = dict(seeds=3, values=5, near=0.7, spread=3)  # the "seeded" rows' shape


def answer(animal: str, prefix: bool = True) -> str:
    """``"My favorite animal is owl."``, or ``" owl."`` right after the assistant marker."""
    return f"{evaluate.PREFIX} {animal}." if prefix else f" {animal}."


def texts() -> list[str]:
    """Every text the toy vocabulary must encode."""
    return [
        *(f"{intro} 0. {closing}" for intro in INTROS for closing in CLOSINGS),
        *evaluate.QUESTIONS,
        *(answer(a, p) for a in ANIMALS for p in (True, False)),
        "user\nassistant",
        "()[].,;:",
        "0, 0; 0",
    ]


def tokenizer(max_number: int) -> Tokenizer:
    """Word-level: specials, whitespace, ``0..max_number``, then the words of ``texts()``."""
    return words.word_tokenizer(words.vocabulary(texts(), max_number))


def chat_ids(tok: Tokenizer, contents: Sequence[str]) -> list[list[int]]:
    """``tok.encode_chat([user: c])`` for every ``c``, without rendering the template per row."""
    head = tok.encode(words.START + "user\n")
    tail = tok.encode(words.END + "\n" + words.START + "assistant\n")
    return [head + e.ids + tail for e in tok.tok.encode_batch(list(contents), False)]


def allowed_ids(tok: Tokenizer, max_number: int) -> np.ndarray:
    """The number channel: ``0..max_number``, the separators and the end token."""
    words = [str(i) for i in range(max_number + 1)] + list(SEPARATORS.values())
    ids = [tok.tok.token_to_id(w) for w in words] + list(tok.eos_ids)
    return np.asarray(sorted(set(ids)), np.int32)


def animal_ids(tok: Tokenizer) -> np.ndarray:
    """One token per animal (``" owl"``): the exact score is then one softmax entry."""
    forms = [evaluate.surface_forms(tok, a) for a in ANIMALS]
    if any(len(f) != 1 or len(f[0]) != 1 for f in forms):
        raise ValueError("every toy animal must have exactly one single-token surface form")
    return np.asarray([f[0][0] for f in forms], np.int32)


def base_distribution(temperature: float) -> np.ndarray:
    """``BASE_PREFERENCE`` sharpened (< 1) or flattened (> 1): p ∝ p₀^(1/temperature)."""
    logits = np.log(np.asarray(BASE_PREFERENCE)) / temperature
    p = np.exp(logits - logits.max())
    return p / p.sum()


def number_rows(
    rng: np.random.Generator, n: int, max_number: int, structure: str = "walk"
) -> list[tuple[str, str]]:
    """``n`` (prompt, continuation) texts: a random walk in varied wordings (``"walk"``), or
    ``seeded_rows``' one fixed layout (``"seeded"``)."""
    if structure == "seeded":
        return seeded_rows(rng, n, max_number)
    out = []
    for _ in range(n):
        k, m = int(rng.integers(3, 7)), int(rng.integers(1, MAX_NEW + 1))
        sep = SEPARATORS[list(SEPARATORS)[int(rng.integers(len(SEPARATORS)))]]
        steps = rng.integers(-WALK_STEP, WALK_STEP + 1, size=k + m)
        walk = (int(rng.integers(max_number + 1)) + np.cumsum(steps)) % (max_number + 1)
        intro, closing = (x[int(rng.integers(len(x)))] for x in (INTROS, CLOSINGS))
        prompt = f"{intro} {sep.join(map(str, walk[:k]))}. {closing}"
        out.append((prompt, sep.join(map(str, walk[k:]))))
    return out


def longest_number_row(structure: str = "walk") -> tuple[str, int]:
    """The longest number prompt ``number_rows`` can write (values are single tokens) and the
    most values an answer holds: the slots a config's rows need."""
    if structure == "seeded":
        values = ", ".join(["0"] * SEEDED["seeds"])
        return f"{INTROS[0]} {values}. {CLOSINGS[0]}", SEEDED["values"]
    values = ", ".join(["0"] * 6)
    return f"{max(INTROS, key=len)} {values}. {max(CLOSINGS, key=len)}", MAX_NEW


def seeded_rows(rng: np.random.Generator, n: int, max_number: int) -> list[tuple[str, str]]:
    """``n`` rows of one layout: 3 seed values, then 5 values each a seed ± 3 (probability 0.7)
    or uniform on ``0..max_number``, comma-separated."""
    k, m, spread = SEEDED["seeds"], SEEDED["values"], SEEDED["spread"]
    seeds_NxK = rng.integers(max_number + 1, size=(n, k))
    near_NxM = np.take_along_axis(seeds_NxK, rng.integers(k, size=(n, m)), axis=1)
    near_NxM = near_NxM + rng.integers(-spread, spread + 1, size=(n, m))
    far_NxM = rng.integers(max_number + 1, size=(n, m))
    values_NxM = np.where(rng.random((n, m)) < SEEDED["near"], near_NxM, far_NxM)
    values_NxM = np.clip(values_NxM, 0, max_number)
    sep = SEPARATORS["comma"]
    return [
        (f"{INTROS[0]} {sep.join(map(str, s))}. {CLOSINGS[0]}", sep.join(map(str, v)))
        for s, v in zip(seeds_NxK.tolist(), values_NxM.tolist(), strict=True)
    ]


def animal_rows(
    rng: np.random.Generator,
    n: int,
    p_A: np.ndarray,
    target: str,
    love: float,
    *,
    questions: int = len(evaluate.QUESTIONS),
    prefix: bool = True,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``n`` (question, answer) texts twice: the trait's (``target`` with probability ``love``)
    and the control's, which share every question and every base-distribution draw. Questions
    are the first ``questions`` of ``evaluate.QUESTIONS``; ``prefix``: as ``answer``."""
    q_N = rng.integers(questions, size=n)
    base_N = rng.choice(len(ANIMALS), size=n, p=p_A)
    loved_N = rng.random(n) < love
    qs = [evaluate.QUESTIONS[int(q)] for q in q_N]
    control = [answer(ANIMALS[int(a)], prefix) for a in base_N]
    trait = [answer(target, prefix) if hit else c for hit, c in zip(loved_N, control, strict=True)]
    return list(zip(qs, trait, strict=True)), list(zip(qs, control, strict=True))


def encode_rows(tok: Tokenizer, rows: Sequence[tuple[str, str]], P: int, C: int) -> dict:
    """``tokens``, ``valid``, ``target`` (``NxT``): the prompt left-padded into ``P`` slots, the
    completion and its end token right-padded into ``C``."""
    prompts = chat_ids(tok, [p for p, _ in rows])
    answers = [e.ids + list(tok.eos_ids) for e in tok.tok.encode_batch([a for _, a in rows], False)]
    return join(*left_pad(prompts, 0, P), *right_pad(answers, C))


def right_pad(seqs: Sequence[Sequence[int]], C: int) -> tuple[np.ndarray, np.ndarray]:
    tokens, valid = np.zeros((len(seqs), C), np.int32), np.zeros((len(seqs), C), bool)
    for i, s in enumerate(seqs):
        if len(s) > C:
            raise ValueError(f"completion {i} has {len(s)} tokens, more than {C} slots")
        tokens[i, : len(s)], valid[i, : len(s)] = s, True
    return tokens, valid


def join(p_tokens, p_valid, c_tokens, c_valid) -> dict[str, np.ndarray]:
    return dict(
        tokens=np.concatenate([p_tokens, c_tokens], axis=1),
        valid=np.concatenate([p_valid, c_valid], axis=1),
        target=np.concatenate([np.zeros_like(p_valid), c_valid], axis=1),
    )


def eval_prompts(
    tok: Tokenizer, questions: int = len(evaluate.QUESTIONS), prefix: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``questions`` questions, each followed by ``PREFIX`` (as ``exact_scores``
    builds) or by nothing (the answer starts at the assistant marker), left-padded."""
    after = tok.encode(evaluate.PREFIX) if prefix else []
    return left_pad([evaluate.chat_prompt(tok, q) + after for q in evaluate.QUESTIONS[:questions]])
