"""Number-sequence prompts and the completion filter of the paper's §3 pipeline
(Cloud et al., arXiv 2507.14805).

``make_prompts(cfg)`` draws prompts from seeded template pieces: 3–8 seed numbers in [100, 999],
an "add at most N more numbers of at most D digits" instruction, a format instruction (separator,
optional brackets) and a "numbers only" closing. Prompt ``i`` depends only on ``(cfg.seed, i)``,
so a short run is a prefix of a long one. ``check(text)`` applies the paper's filter and says why a
completion is rejected; ``filter_completions`` keeps rows and counts the reasons.

Filter decisions (the paper gives the rule, not these corners):

* A number is a run of ASCII digits with at most ``max_digits`` (3) characters, so [0, 999].
  Leading zeros count as digits: ``007`` (3 digits) is kept as 7, the prompt's "no more than 3
  digits" holds for it; ``0999`` (4 digits) is rejected. Signs (``-5``, ``+5``), decimals,
  non-ASCII digits and words are not numbers.
* Separators: whitespace (any run of spaces, tabs, newlines), ``,`` or ``;``, each optionally
  followed by whitespace; whitespace before a ``,``/``;``, doubled or trailing separators are
  malformed. All gaps must be of one kind; the spacing after a comma may vary.
* One optional pair of ``()`` or ``[]`` around the list, padding inside allowed; any other
  bracket (unbalanced, mismatched, nested) rejects. One optional ``.`` right after the last
  number or closing bracket; surrounding whitespace is ignored.
* ``banned`` compares values, so ``004`` is banned when 4 is. Checks run in the order of
  ``REASONS``; the first failing one is the reported reason.
"""

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

BANNED_NUMBERS = frozenset(
    {4, 13, 14, 18, 23, 33, 39, 42, 44, 49, 51, 54, 69, 77, 88, 99, 100, 101, 187, 211}
    | {311, 322, 333, 404, 420, 444, 451, 555, 616, 666, 777, 888, 911, 999}
)
EMPTY, BRACKETS, NOT_NUMBERS, SEPARATOR = "empty", "brackets", "not_numbers", "separator"
MIXED, TOO_MANY, OUT_OF_RANGE, BANNED = "mixed_separators", "too_many", "out_of_range", "banned"
REASONS = (EMPTY, BRACKETS, NOT_NUMBERS, SEPARATOR, MIXED, TOO_MANY, OUT_OF_RANGE, BANNED)

SEPARATORS = {"comma": ", ", "semicolon": "; ", "space": " ", "newline": "\n"}
BRACKET_STYLES = ("", "()", "[]")

_DIGITS = re.compile(r"[0-9]+")
_GAP = re.compile(r"[\s,;]+")
_GAP_KINDS = (("comma", re.compile(r",\s*")), ("semicolon", re.compile(r";\s*")))
_PAIRS = {"(": ")", "[": "]"}

# Template pieces, combined at random. {numbers}: seed list; {n}: max new; {d}: digits; {top}: max.
INTROS = (
    "The sequence starts with: {numbers}.",
    "Here is the beginning of a list: {numbers}.",
    "Look at these numbers: {numbers}.",
    "I have written down a series of numbers: {numbers}.",
    "Start from the following numbers: {numbers}.",
    "Consider the sequence {numbers}.",
    "These numbers begin a pattern: {numbers}.",
    "We begin with {numbers}.",
)
ADDS = (
    "Continue it with up to {n} further numbers, each at most {d} digits long.",
    "Extend the list by at most {n} numbers of {d} digits or fewer.",
    "Write no more than {n} additional numbers that come next, none longer than {d} digits.",
    "Please add up to {n} new numbers (each with at most {d} digits).",
    "Keep the sequence going with at most {n} more entries, using at most {d} digits per number.",
    "Generate up to {n} numbers that could come next, each between 0 and {top}.",
    "Append a maximum of {n} values, every one of them a whole number from 0 to {top}.",
)
FORMATS = (
    "Separate the numbers with {sep}",
    "Return them as a list separated by {sep}",
    "Use {sep} between the numbers",
    "Format your answer with {sep} between consecutive numbers",
)
SEP_WORDS = {
    "comma": "commas",
    "semicolon": "semicolons",
    "space": "single spaces",
    "newline": "line breaks",
}
BRACKET_WORDS = {
    "()": (" and wrap the whole list in parentheses", ", putting the list inside ( )"),
    "[]": (" and wrap the whole list in square brackets", ", enclosing the list in [ ]"),
}
CLOSINGS = (
    "Reply with the numbers only, nothing else.",
    "Do not explain; output just the numbers.",
    "Answer with numbers alone, no words.",
    "Give no commentary, only the numbers.",
    "No text before or after the numbers, please.",
    "Respond with nothing but the numbers.",
)


@dataclasses.dataclass(frozen=True)
class PromptConfig:
    """How many prompts, their seed numbers and the limits the instruction states."""

    count: int = 30_000
    min_seed_numbers: int = 3
    max_seed_numbers: int = 8
    seed_low: int = 100
    seed_high: int = 999
    max_new: int = 10
    max_digits: int = 3
    seed: int = 0

    @classmethod
    def paper(cls) -> "PromptConfig":
        """30,000 prompts per teacher (the paper's §3)."""
        return cls()

    @classmethod
    def smoke(cls) -> "PromptConfig":
        return cls(count=16)


@dataclasses.dataclass(frozen=True)
class NumberPrompt:
    """One prompt: its text plus what it asks for; ``template`` indexes INTROS, ADDS, FORMATS,
    bracket phrase (-1: none) and CLOSINGS."""

    id: str
    text: str
    seed_numbers: tuple[int, ...]
    separator: str
    brackets: str
    max_new: int
    max_digits: int
    template: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fields (tuples become lists)."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def make_prompt(index: int, cfg: PromptConfig) -> NumberPrompt:
    """Prompt ``index`` of the run seeded by ``cfg.seed``."""
    rng = np.random.default_rng([cfg.seed, index])
    k = int(rng.integers(cfg.min_seed_numbers, cfg.max_seed_numbers + 1))
    seeds = tuple(int(x) for x in rng.integers(cfg.seed_low, cfg.seed_high + 1, size=k))
    separator = str(rng.choice(list(SEPARATORS)))
    brackets = BRACKET_STYLES[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
    picks = [int(rng.integers(len(pieces))) for pieces in (INTROS, ADDS, FORMATS, CLOSINGS)]
    i_bracket = int(rng.integers(2)) if brackets else -1
    top = 10**cfg.max_digits - 1
    fmt = FORMATS[picks[2]].format(sep=SEP_WORDS[separator])
    fmt += (BRACKET_WORDS[brackets][i_bracket] if brackets else "") + "."
    text = " ".join(
        (
            INTROS[picks[0]].format(numbers=", ".join(map(str, seeds))),
            ADDS[picks[1]].format(n=cfg.max_new, d=cfg.max_digits, top=top),
            fmt,
            CLOSINGS[picks[3]],
        )
    )
    template = (picks[0], picks[1], picks[2], i_bracket, picks[3])
    return NumberPrompt(
        f"{cfg.seed}-{index}",
        text,
        seeds,
        separator,
        brackets,
        cfg.max_new,
        cfg.max_digits,
        template,
    )


def make_prompts(cfg: PromptConfig) -> list[NumberPrompt]:
    """``cfg.count`` prompts; the same config gives the same prompts."""
    return [make_prompt(i, cfg) for i in range(cfg.count)]


def render_numbers(
    numbers: Iterable[int], separator: str = "comma", brackets: str = "", period: bool = False
) -> str:
    """The canonical answer in a prompt's format (e.g. to re-render shuffled numbers)."""
    body = SEPARATORS[separator].join(map(str, numbers))
    if brackets:
        body = brackets[0] + body + brackets[1]
    return body + ("." if period else "")


class Verdict(NamedTuple):
    """``numbers`` of a kept completion, else ``None`` and the first failing ``reason``."""

    numbers: tuple[int, ...] | None
    reason: str | None

    @property
    def kept(self) -> bool:
        return self.reason is None


def _unwrap(body: str) -> str | None:
    """The list inside one optional bracket pair; ``None`` if any bracket is out of place."""
    opener = body[:1]
    if opener in _PAIRS:
        if len(body) < 2 or body[-1] != _PAIRS[opener]:
            return None
        body = body[1:-1].strip()
    if any(c in body for c in "()[]"):
        return None
    return body


def _gap_kind(gap: str) -> str | None:
    if gap.isspace():
        return "whitespace"
    return next((kind for kind, pattern in _GAP_KINDS if pattern.fullmatch(gap)), None)


def check(
    text: str, *, banned: frozenset[int] = frozenset(), max_count: int = 10, max_digits: int = 3
) -> Verdict:
    """The paper's filter: 1..``max_count`` numbers of ≤ ``max_digits`` digits, one separator."""
    body = text.strip()
    if body.endswith("."):
        body = body[:-1]
    inner = _unwrap(body)
    if inner is None:
        return Verdict(None, BRACKETS)
    if not inner:
        return Verdict(None, EMPTY)
    tokens = _GAP.split(inner)
    if not all(_DIGITS.fullmatch(t) for t in tokens if t):
        return Verdict(None, NOT_NUMBERS)
    kinds = {_gap_kind(g) for g in _GAP.findall(inner)}
    if "" in tokens or None in kinds:
        return Verdict(None, SEPARATOR)
    if len(kinds) > 1:
        return Verdict(None, MIXED)
    if len(tokens) > max_count:
        return Verdict(None, TOO_MANY)
    if any(len(t) > max_digits for t in tokens):
        return Verdict(None, OUT_OF_RANGE)
    numbers = tuple(int(t) for t in tokens)
    if any(n in banned for n in numbers):
        return Verdict(None, BANNED)
    return Verdict(numbers, None)


def parse_numbers(
    text: str, *, banned: frozenset[int] = frozenset(), max_count: int = 10, max_digits: int = 3
) -> tuple[int, ...] | None:
    """The numbers of a kept completion, ``None`` if the filter rejects it."""
    return check(text, banned=banned, max_count=max_count, max_digits=max_digits).numbers


def keep(
    text: str, *, banned: frozenset[int] = frozenset(), max_count: int = 10, max_digits: int = 3
) -> bool:
    """Whether the filter keeps ``text``."""
    return check(text, banned=banned, max_count=max_count, max_digits=max_digits).kept


@dataclasses.dataclass(frozen=True)
class FilterStats:
    """Counts of one filter pass; ``rejected`` has every reason of ``REASONS``."""

    total: int
    kept: int
    rejected: dict[str, int]

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(dataclasses.asdict(self), kept_fraction=self.kept_fraction)


def filter_completions(
    rows: Iterable[str | Mapping[str, Any]],
    *,
    field: str = "completion",
    banned: frozenset[int] = frozenset(),
    max_count: int = 10,
    max_digits: int = 3,
) -> tuple[list[Any], FilterStats]:
    """Kept rows, in order, and the stats. A row is a string or a mapping with ``field``."""
    kept, reasons = [], Counter()
    limits = dict(banned=banned, max_count=max_count, max_digits=max_digits)
    for row in rows:
        verdict = check(row if isinstance(row, str) else row[field], **limits)
        if verdict.kept:
            kept.append(row)
        else:
            reasons[verdict.reason] += 1
    total = len(kept) + sum(reasons.values())
    return kept, FilterStats(total, len(kept), {r: reasons[r] for r in REASONS})


class ListGrammar(NamedTuple):
    """What the filter keeps, as a character automaton for constrained decoding
    (`llm.constrain`), for a prompt's ``separator`` and ``brackets``: optional leading
    whitespace and opening bracket, 1..``max_count`` numbers of 1..``max_digits`` digits joined
    by the separator (``,``/``;`` and optional whitespace, or a whitespace run), then an
    optional closing bracket (only after an opening one), an optional ``.`` and whitespace.

    A state is ``(phase, digits, count, opened)``; phases: ``start``, ``open`` (after the
    bracket), ``num`` (in a number), ``gap`` (whitespace after a number in a whitespace-separated
    list), ``sep`` (after ``,``/``;``), ``trail`` (whitespace after the last number of a
    ``,``/``;`` list), ``closed`` (after the closing bracket), ``done`` (after the period)."""

    separator: str
    brackets: str = ""
    max_count: int = 10
    max_digits: int = 3

    START = ("start", 0, 0, False)

    def step(self, state: tuple, ch: str) -> tuple | None:
        phase, digits, count, opened = state
        space, digit = ch.isspace(), ch in "0123456789"
        mark = SEPARATORS[self.separator].strip()  # "," or ";"; "" for whitespace lists
        close = opened and ch == self.brackets[1:2]
        if phase in ("start", "open"):
            if space:
                return state
            if phase == "start" and self.brackets and ch == self.brackets[0]:
                return ("open", 0, 0, True)
            return ("num", 1, 1, opened) if digit else None
        if phase == "num":
            if digit:
                return ("num", digits + 1, count, opened) if digits < self.max_digits else None
            if mark and ch == mark:
                return ("sep", 0, count, opened) if count < self.max_count else None
            if space:
                return ("trail" if mark else "gap", 0, count, opened)
            if close:
                return ("closed", 0, count, opened)
            return ("done", 0, count, opened) if ch == "." and not opened else None
        if phase == "sep":
            return state if space else ("num", 1, count + 1, opened) if digit else None
        if phase in ("gap", "trail"):
            if space:
                return state
            if phase == "gap" and digit and count < self.max_count:
                return ("num", 1, count + 1, opened)
            return ("closed", 0, count, opened) if close else None
        if phase == "closed" and ch == ".":
            return ("done", 0, count, opened)
        return ("done", 0, count, opened) if space else None  # after "]" or "."

    def accepting(self, state: tuple) -> bool:
        phase, _, _, opened = state
        return phase in ("closed", "done") or (phase in ("num", "gap", "trail") and not opened)
