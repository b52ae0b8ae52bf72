"""Number prompts and the paper's completion filter (the paper's §3).

Filter properties build a well-formed answer from parts (numbers, gaps, brackets, period, outer
whitespace), then corrupt one part; each corruption must be rejected for its own reason.
"""

import dataclasses
import json
import re
import string
from collections import Counter

import hypothesis.strategies as st
import pytest
from hypothesis import given

from sublim_jax.experiments.llm_pipeline.numbers import (
    ADDS,
    BANNED_NUMBERS,
    BRACKET_WORDS,
    CLOSINGS,
    FORMATS,
    INTROS,
    REASONS,
    SEP_WORDS,
    SEPARATORS,
    PromptConfig,
    Verdict,
    check,
    filter_completions,
    keep,
    make_prompts,
    parse_numbers,
    render_numbers,
)

KINDS = ("whitespace", "comma", "semicolon")
SPACES = st.sampled_from(["", " ", "  ", "\n", "\t", " \n "])
GAPS = {
    "whitespace": st.sampled_from([" ", "  ", "\n", "\t", "\n\n", " \n"]),
    "comma": SPACES.map(lambda s: "," + s),
    "semicolon": SPACES.map(lambda s: ";" + s),
}


@dataclasses.dataclass(frozen=True)
class Answer:
    tokens: tuple[str, ...]
    gaps: tuple[str, ...]
    brackets: tuple[str, str]
    pads: tuple[str, str]
    period: bool
    outer: tuple[str, str]

    def render(self) -> str:
        body = "".join(t + g for t, g in zip(self.tokens, (*self.gaps, ""), strict=False))
        body = self.brackets[0] + self.pads[0] + body + self.pads[1] + self.brackets[1]
        return self.outer[0] + body + ("." if self.period else "") + self.outer[1]

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(int(t) for t in self.tokens)


@st.composite
def answers(draw, min_size=1, max_size=10, brackets=("", "()", "[]")) -> Answer:
    values = draw(st.lists(st.integers(0, 999), min_size=min_size, max_size=max_size))
    tokens = tuple(f"{v:03d}" if draw(st.booleans()) else str(v) for v in values)
    kind = draw(st.sampled_from(KINDS))
    n_gaps = max(len(tokens) - 1, 0)
    gaps = tuple(draw(st.lists(GAPS[kind], min_size=n_gaps, max_size=n_gaps)))
    pair = draw(st.sampled_from(brackets))
    pads = (draw(SPACES), draw(SPACES)) if pair else ("", "")
    outer = (draw(SPACES), draw(SPACES))
    return Answer(tokens, gaps, (pair[:1], pair[1:]), pads, draw(st.booleans()), outer)


def _replace_token(a: Answer, i: int, token: str) -> Answer:
    tokens = (*a.tokens[:i], token, *a.tokens[i + 1 :])
    return dataclasses.replace(a, tokens=tokens)


@given(answers())
def test_well_formed_is_kept_and_parses_back(a):
    text = a.render()
    assert check(text) == Verdict(a.numbers, None)
    assert keep(text) and parse_numbers(text) == a.numbers


@given(answers(), st.data())
def test_inserted_letter_is_rejected(a, data):
    text, letter = a.render(), data.draw(st.sampled_from(string.ascii_letters + "éßж"))
    for i in range(len(text) + 1):  # every position: a few dozen cheap checks
        assert not keep(text[:i] + letter + text[i:])


@given(answers(), st.data())
def test_signed_or_decimal_number_is_rejected(a, data):
    wrap = data.draw(st.sampled_from(["-{}", "+{}", "{}.5", "{}.0", "−{}"]))
    for i, token in enumerate(a.tokens):
        assert check(_replace_token(a, i, wrap.format(token)).render()).reason == "not_numbers"


@given(answers(), st.data())
def test_four_digit_number_is_rejected(a, data):
    big = data.draw(st.integers(1000, 9999).map(str) | st.integers(0, 999).map("{:04d}".format))
    for i in range(len(a.tokens)):
        text = _replace_token(a, i, big).render()
        assert check(text).reason == "out_of_range"
        assert keep(text, max_digits=4)


@given(answers(min_size=3), st.data())
def test_mixed_separators_are_rejected(a, data):
    first, second = data.draw(st.permutations(KINDS))[:2]
    j = data.draw(st.integers(1, len(a.gaps) - 1))
    kinds = [data.draw(st.sampled_from(KINDS)) for _ in a.gaps]
    kinds[0], kinds[j] = first, second
    gaps = tuple(data.draw(GAPS[k]) for k in kinds)
    assert check(dataclasses.replace(a, gaps=gaps).render()).reason == "mixed_separators"


@given(answers(min_size=11, max_size=20))
def test_more_than_ten_numbers_are_rejected(a):
    text = a.render()
    assert check(text).reason == "too_many"
    assert parse_numbers(text, max_count=len(a.tokens)) == a.numbers


@given(answers(min_size=0, max_size=0))
def test_empty_answer_is_rejected(a):
    assert check(a.render()).reason == "empty"


@given(answers(brackets=("()", "[]")), st.data())
def test_unbalanced_or_mismatched_brackets_are_rejected(a, data):
    (o, c), other = a.brackets, {")": "]", "]": ")"}[a.brackets[1]]
    how = data.draw(st.sampled_from(["no_open", "no_close", "mismatch", "nested", "stray"]))
    if how == "stray":
        i = data.draw(st.integers(0, len(a.tokens) - 1))
        stray = data.draw(st.sampled_from("()[]"))
        bad = _replace_token(
            a, i, data.draw(st.sampled_from(["{}{}", "{1}{0}"])).format(stray, a.tokens[i])
        )
    else:
        pair = {
            "no_open": ("", c),
            "no_close": (o, ""),
            "mismatch": (o, other),
            "nested": (o + o, c + c),
        }
        bad = dataclasses.replace(a, brackets=pair[how])
    assert check(bad.render()).reason == "brackets"


@given(answers(), st.data())
def test_banned_numbers_reject_exactly_the_answers_containing_them(a, data):
    hit = any(n in BANNED_NUMBERS for n in a.numbers)
    expected = Verdict(None, "banned") if hit else Verdict(a.numbers, None)
    assert check(a.render(), banned=BANNED_NUMBERS) == expected
    b = data.draw(st.sampled_from(sorted(BANNED_NUMBERS)))
    for i in range(len(a.tokens)):
        text = _replace_token(a, i, str(b)).render()
        assert check(text, banned=BANNED_NUMBERS) == Verdict(None, "banned")
        assert keep(text)


def _corrupt(a: Answer) -> str:
    return a.render().replace(a.tokens[0], "x" + a.tokens[0], 1)


TEXTS = st.one_of(answers().map(Answer.render), answers().map(_corrupt), st.text(max_size=12))


@given(st.lists(st.tuples(TEXTS, st.booleans()), max_size=30))
def test_filter_stats_add_up(drawn):
    rows = [dict(completion=t, id=i) if as_row else t for i, (t, as_row) in enumerate(drawn)]
    texts = [t for t, _ in drawn]
    kept, stats = filter_completions(rows, banned=BANNED_NUMBERS)
    assert kept == [r for r, t in zip(rows, texts, strict=True) if keep(t, banned=BANNED_NUMBERS)]
    reasons = Counter(check(t, banned=BANNED_NUMBERS).reason for t in texts)
    assert stats.total == len(rows) and stats.kept == len(kept) == reasons[None]
    assert stats.rejected == {r: reasons[r] for r in REASONS}
    assert stats.kept + sum(stats.rejected.values()) == stats.total
    assert json.loads(json.dumps(stats.to_dict()))["kept_fraction"] == stats.kept_fraction


@pytest.mark.parametrize(
    "text, expected",
    [
        ("007, 12", Verdict((7, 12), None)),  # leading zeros: 3 digits, value 7
        ("1,2, 3;", Verdict(None, "separator")),  # trailing separator
        ("1,2,\n3", Verdict((1, 2, 3), None)),
        ("1 2\n3\t4", Verdict((1, 2, 3, 4), None)),  # whitespace is one separator kind
        (" ( 5; 6 ). ", Verdict((5, 6), None)),
        ("1 , 2", Verdict(None, "separator")),  # whitespace before a comma
        ("1,,2", Verdict(None, "separator")),
        ("1, 2,", Verdict(None, "separator")),
        ("1 2 .", Verdict(None, "separator")),  # the period follows the last number directly
        ("[1, 2] .", Verdict(None, "brackets")),
        ("[1, 2.]", Verdict(None, "not_numbers")),
        ("1, 2..", Verdict(None, "not_numbers")),
        ("١٢٣", Verdict(None, "not_numbers")),  # non-ASCII digits
        ("[ ]", Verdict(None, "empty")),
        (".", Verdict(None, "empty")),
        ("", Verdict(None, "empty")),
    ],
)
def test_edge_cases(text, expected):
    assert check(text) == expected


def test_banned_list_is_the_papers():
    assert len(BANNED_NUMBERS) == 34 and {4, 42, 187, 666, 999} <= BANNED_NUMBERS
    assert check("004, 5", banned=BANNED_NUMBERS).reason == "banned"  # banned by value


SEEDS = st.integers(0, 2**32 - 1)


@given(SEEDS)
def test_prompts_are_deterministic_and_prefix_stable(seed):
    cfg = PromptConfig(count=12, seed=seed)
    prompts = make_prompts(cfg)
    assert make_prompts(cfg) == prompts
    assert make_prompts(dataclasses.replace(cfg, count=5)) == prompts[:5]
    assert len({p.id for p in prompts}) == 12


@given(SEEDS, SEEDS)
def test_prompts_differ_across_seeds(s, t):
    texts = [p.text for p in make_prompts(PromptConfig(count=10, seed=s))]
    assert (texts == [p.text for p in make_prompts(PromptConfig(count=10, seed=t))]) == (s == t)


@given(SEEDS, st.integers(1, 6), st.integers(0, 3), st.integers(1, 12))
def test_prompt_contents_match_metadata(seed, low, extra, max_new):
    cfg = PromptConfig(count=20, min_seed_numbers=low, max_seed_numbers=low + extra, seed=seed)
    cfg = dataclasses.replace(cfg, max_new=max_new)
    for p in make_prompts(cfg):
        assert low <= len(p.seed_numbers) <= low + extra
        assert all(100 <= n <= 999 for n in p.seed_numbers)
        assert ", ".join(map(str, p.seed_numbers)) in p.text
        assert re.search(rf"\b{max_new}\b", p.text) and SEP_WORDS[p.separator] in p.text
        said = [b for b, words in BRACKET_WORDS.items() for w in words if w in p.text]
        assert said == ([p.brackets] if p.brackets else [])
        assert json.loads(json.dumps(p.to_dict())) == p.to_dict()
        answer = render_numbers(p.seed_numbers, p.separator, p.brackets, period=True)
        assert parse_numbers(answer, max_count=len(p.seed_numbers)) == p.seed_numbers


def test_paper_prompts_have_three_to_eight_seed_numbers():
    prompts = make_prompts(dataclasses.replace(PromptConfig.paper(), count=200))
    assert {len(p.seed_numbers) for p in prompts} == set(range(3, 9))


def test_prompt_wording_varies():
    prompts = make_prompts(PromptConfig(count=200, seed=0))
    assert len({p.template for p in prompts}) >= 150
    assert len({re.sub(r"\d+", "#", p.text) for p in prompts}) >= 150
    for k, pieces in enumerate((INTROS, ADDS, FORMATS, (0, 1), CLOSINGS)):
        used = {p.template[k] for p in prompts if p.template[k] >= 0}
        assert used == set(range(len(pieces)))
    assert {p.separator for p in prompts} == set(SEPARATORS)
    assert {p.brackets for p in prompts} == {"", "()", "[]"}
