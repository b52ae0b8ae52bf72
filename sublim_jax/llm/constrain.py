"""Constrained decoding: which tokens a sampler may draw at each step.

A small chat model asked for numbers often answers in prose, or in a list the paper's filter
rejects (four-digit numbers, a second separator, a dangling bracket). A constraint is a
character-level automaton (a ``step(state, char)`` function: the next state, or None where the
character may not follow) lifted to the tokenizer's vocabulary: token ``a`` is allowed in state
``s`` when every character of its text steps through, and an end token (EOS) where the state
accepts. The sampler then draws only allowed tokens, the model's probabilities renormalised over
them (`sampling.mask_logits`), and carries each row's state through the decode loop.

Tables are computed from the tokenizer's vocabulary, so they hold for any model; a vocabulary
that cannot write what is asked for (no digit-only token, a separator no allowed token contains)
is refused before anything is sampled.
"""

import string
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import NamedTuple

import numpy as np

DIGITS = frozenset(string.digits)
WHITESPACE = frozenset(" \t\n")


def token_texts(tok) -> list[str]:
    """The text of every token id (``tok``: `tokenizer.Tokenizer`); special tokens and byte
    pieces that are not whole characters decode to ``""`` or ``"\\ufffd"``, which no character
    set allows."""
    size = tok.tok.get_vocab_size(with_added_tokens=True)
    return [tok.decode([i]) for i in range(size)]


def number_chars(separator: str, brackets: str = "") -> frozenset[str]:
    """Characters of a number list written with ``separator`` (its text, e.g. ``", "``) and
    optionally wrapped in ``brackets`` (e.g. ``"()"``): digits, whitespace, both."""
    return DIGITS | WHITESPACE | frozenset(separator) | frozenset(brackets)


def allowed_mask(
    texts: Sequence[str], chars: Iterable[str], end_ids: Iterable[int], vocab_size: int = 0
) -> np.ndarray:
    """``allowed_V[i]``: token ``i``'s text is non-empty and made only of ``chars``, or ``i`` is
    in ``end_ids``. ``vocab_size`` (the model's, ≥ the tokenizer's) pads the mask with False.

    Raises ``ValueError`` when no allowed token is digits only, when no end id is given, or
    when a non-whitespace character of ``chars`` is in no allowed token (the model could never
    write it)."""
    chars = frozenset(chars)
    allowed_V = np.zeros(max(vocab_size, len(texts)), bool)
    allowed_V[: len(texts)] = [bool(t) and set(t) <= chars for t in texts]
    ends = [i for i in end_ids if 0 <= i < allowed_V.size]
    if not ends:
        raise ValueError("constrained decoding needs an end-of-sequence token to stop on")
    kept = [t for t, ok in zip(texts, allowed_V, strict=False) if ok]
    if not any(set(t) <= DIGITS for t in kept):
        raise ValueError("the tokenizer has no token made of digits only: it cannot write numbers")
    written = set().union(*map(set, kept))
    missing = sorted(c for c in chars - DIGITS - WHITESPACE if c not in written)
    if missing:
        raise ValueError(
            f"no token of the vocabulary writes {''.join(missing)!r} among digits and "
            "whitespace: the prompt's separator cannot be written under the constraint"
        )
    allowed_V[ends] = True
    return allowed_V


Step = Callable[[Hashable, str], Hashable | None]


class Automaton(NamedTuple):
    """A constraint over a vocabulary: ``next_SxA[s, a]`` is the state after candidate token
    ``tokens_A[a]`` in state ``s`` (-1: not allowed there); ``accept_S[s]``: an end token is
    allowed in state ``s``. State 0 is the start."""

    tokens_A: np.ndarray
    next_SxA: np.ndarray
    accept_S: np.ndarray


def token_automaton(
    texts: Sequence[str],
    candidates: np.ndarray,
    step: Step,
    start: Hashable,
    accepting: Callable[[Hashable], bool],
) -> Automaton:
    """Lift the character automaton (``step``, ``start``, ``accepting``) to the tokens
    ``candidates`` (ids into ``texts``), over the states reachable from ``start`` through
    them."""
    tokens_A = np.asarray(candidates, np.int32)
    index, rows, todo = {start: 0}, [], [start]
    while todo:
        state = todo.pop()
        row = np.full(len(tokens_A), -1, np.int32)
        for a, token in enumerate(tokens_A):
            after = state
            for char in texts[token]:
                after = step(after, char)
                if after is None:
                    break
            if after is not None:
                if after not in index:
                    index[after] = len(index)
                    todo.append(after)
                row[a] = index[after]
        rows.append((index[state], row))
    next_SxA = np.full((len(index), len(tokens_A)), -1, np.int32)
    for s, row in rows:
        next_SxA[s] = row
    accept_S = np.zeros(len(index), bool)
    for state, s in index.items():
        accept_S[s] = accepting(state)
    return Automaton(tokens_A, next_SxA, accept_S)


class Constraint(NamedTuple):
    """``K`` automata over one candidate set, for the sampler (`sampling.generate`): row ``b``
    follows automaton ``kind_B[b]`` from state 0. ``column_V[v]``: token ``v``'s candidate
    column, -1 for the rest; ``end_ids``: the end tokens."""

    tokens_A: np.ndarray
    column_V: np.ndarray
    next_KxSxA: np.ndarray
    accept_KxS: np.ndarray
    end_ids: np.ndarray


def stack(automata: Sequence[Automaton], vocab_size: int, end_ids: Iterable[int]) -> Constraint:
    """One `Constraint` from automata with their own candidates and state counts (padded with
    states that allow nothing)."""
    tokens_A = np.unique(np.concatenate([a.tokens_A for a in automata])).astype(np.int32)
    column_V = np.full(vocab_size, -1, np.int32)
    column_V[tokens_A] = np.arange(len(tokens_A), dtype=np.int32)
    S = max(a.next_SxA.shape[0] for a in automata)
    next_KxSxA = np.full((len(automata), S, len(tokens_A)), -1, np.int32)
    accept_KxS = np.zeros((len(automata), S), bool)
    for k, a in enumerate(automata):
        next_KxSxA[k, : a.next_SxA.shape[0]][:, column_V[a.tokens_A]] = a.next_SxA
        accept_KxS[k, : a.accept_S.size] = a.accept_S
    return Constraint(
        tokens_A, column_V, next_KxSxA, accept_KxS, np.asarray(list(end_ids), np.int32)
    )
