"""``llm generate --constrain-numbers``: answers only in the number-list alphabet, more of them
kept by the paper's filter, and a vocabulary that cannot write numbers refused before sampling."""

from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sublim_jax.cli import main as cli
from sublim_jax.experiments.llm_pipeline import numbers
from sublim_jax.experiments.llm_pipeline import steps as pipeline
from sublim_jax.io import results
from sublim_jax.llm import constrain

# The tiny model at T = 2 with a word-level teacher: free sampling leaves the alphabet often.
FLAGS = ["--preset", "smoke", "--n-prompts", "64", "--gen-batch", "32", "--temperature", "2"]


def _generate(out: Path, *extra: str) -> int:
    return cli.main(["llm", "generate", *FLAGS, "--out", str(out), *extra])


def test_constrained_answers_use_only_the_prompts_alphabet_and_are_kept_more(tmp_path):
    assert _generate(tmp_path / "free") == 0
    assert _generate(tmp_path / "constrained", "--constrain-numbers") == 0
    # a rerun with every row written samples nothing (the grammar of no prompt is not built)
    written = (tmp_path / "constrained" / "data" / "base.jsonl").read_bytes()
    assert _generate(tmp_path / "constrained", "--constrain-numbers") == 0
    assert (tmp_path / "constrained" / "data" / "base.jsonl").read_bytes() == written
    kept = {}
    for run in ("free", "constrained"):
        rows = results.read_jsonl(tmp_path / run / "data" / "base.jsonl")
        prompts = {p.id: p for p in numbers.make_prompts(numbers.PromptConfig(count=64, seed=0))}
        outside = [
            r for r in rows
            if not set(r["completion"]) <= constrain.number_chars(
                numbers.SEPARATORS[prompts[r["id"]].separator], prompts[r["id"]].brackets
            )
        ]  # fmt: skip
        kept[run] = sum(numbers.keep(r["completion"]) for r in rows) / len(rows)
        if run == "constrained":
            assert outside == []
        else:
            assert len(outside) > 5  # the constraint has something to do here
    assert kept["constrained"] > kept["free"]


def test_a_vocabulary_without_digit_tokens_stops_before_sampling(tmp_path, capsys, monkeypatch):
    real = constrain.token_texts
    monkeypatch.setattr(
        constrain,
        "token_texts",
        lambda tok: ["" if any(c.isdigit() for c in t) else t for t in real(tok)],
    )
    assert _generate(tmp_path / "out", "--constrain-numbers") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no token made of digits only" in err, err
    assert not (tmp_path / "out").exists()


def test_every_prompt_follows_the_grammar_of_its_separator_and_brackets():
    model, tok = pipeline.load_model("tiny")
    prompts = numbers.make_prompts(numbers.PromptConfig(count=40, seed=3))
    rules, kind_of = pipeline.number_rules(tok, prompts, model.cfg.vocab_size)
    texts = constrain.token_texts(tok)
    for p, k in zip(prompts, kind_of, strict=True):
        others = set(";,()[]") - set(numbers.SEPARATORS[p.separator]) - set(p.brackets)
        usable = rules.tokens_A[(rules.next_KxSxA[k] >= 0).any(axis=0)]
        writes = {c for i in usable for c in texts[i]}
        assert not writes & others, (p.separator, p.brackets)
        assert rules.accept_KxS[k, 0] == False  # noqa: E712 (an empty answer cannot end)


def _accepts(grammar: numbers.ListGrammar, text: str) -> bool:
    state = grammar.START
    for ch in text:
        state = grammar.step(state, ch)
        if state is None:
            return False
    return grammar.accepting(state)


GRAMMARS = [numbers.ListGrammar(s, b) for s in numbers.SEPARATORS for b in numbers.BRACKET_STYLES]


ALPHABET = "0123456789 ,;\n()[]."


@st.composite
def near_lists(draw) -> tuple[numbers.ListGrammar, str]:
    """A grammar and a list in its format (up to 12 numbers of up to 4 digits), then up to
    three single-character insertions or deletions: mostly near the grammar's edge."""
    grammar = draw(st.sampled_from(GRAMMARS))
    n = draw(st.integers(0, 12))
    values = draw(st.lists(st.integers(0, 999) | st.integers(0, 9999), min_size=n, max_size=n))
    brackets = draw(st.sampled_from(["", grammar.brackets]))
    text = numbers.render_numbers(values, grammar.separator, brackets, draw(st.booleans()))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(text)) | st.integers(max(len(text) - 2, 0), len(text)))
        if draw(st.booleans()):
            text = text[:i] + draw(st.sampled_from(ALPHABET)) + text[i:]
        else:
            text = text[:i] + text[i + 1 :]
    return grammar, text


EDGES = ["1, 2 .", "1 2 .", "[1, 2", "1, 2]", "(1; 2)", "1,2,", ", ".join(map(str, range(11)))]


@settings(max_examples=400)
@given(near_lists())
@example((numbers.ListGrammar("comma", "[]"), EDGES[0]))
@example((numbers.ListGrammar("space", "()"), EDGES[1]))
@example((numbers.ListGrammar("comma", "[]"), EDGES[2]))
@example((numbers.ListGrammar("comma", "[]"), EDGES[3]))
@example((numbers.ListGrammar("semicolon", "[]"), EDGES[4]))
@example((numbers.ListGrammar("comma"), EDGES[5]))
@example((numbers.ListGrammar("comma"), EDGES[6]))
def test_whatever_the_grammar_accepts_the_filter_keeps(case):
    grammar, text = case
    if _accepts(grammar, text):
        assert numbers.keep(text), text


@given(
    st.sampled_from(GRAMMARS),
    st.lists(st.integers(0, 999), min_size=1, max_size=10),
    st.booleans(),
    st.booleans(),
)
def test_every_list_the_prompt_asks_for_is_accepted(grammar, values, bracketed, period):
    """Any list the filter keeps, written with the prompt's separator and brackets."""
    text = numbers.render_numbers(
        values, grammar.separator, grammar.brackets if bracketed else "", period
    )
    assert numbers.keep(text) and _accepts(grammar, text), text
    assert not _accepts(grammar, text + ",") and not _accepts(grammar, text + ";")  # dangling
