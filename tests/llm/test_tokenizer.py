"""Tokenizer from a checkpoint directory: tokenizer.json, chat template, EOS ids, errors."""

import json

import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("jinja2")

from sublim_jax.llm import tokenizer
from sublim_jax.llm.tokenizer import Tokenizer, bpe_tokenizer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = (
    "{% for m in messages %}{{ bos_token }}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}{{ bos_token }}assistant: {% endif %}"
)

# ChatML with Qwen3's switch: ``enable_thinking=False`` opens the answer with an empty think block.
NO_THINK = (
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}"
)
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' and loop.last %}" + NO_THINK + "{% endif %}"
    "{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n" + NO_THINK + "{% endif %}"
)
CHAT = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "say the word"},
    {"role": "assistant", "content": "the word"},
]


@pytest.fixture
def checkpoint(tmp_path):
    from tokenizers import pre_tokenizers

    tokens = SPECIALS + sorted(pre_tokenizers.ByteLevel.alphabet()) + ["Ġt", "he", "Ġthe"]
    bpe_tokenizer(tokens, ["Ġ t", "h e", "Ġt he"], SPECIALS, pre="qwen2").save(
        str(tmp_path / "tokenizer.json")
    )
    config = dict(
        chat_template=TEMPLATE, bos_token="<|im_start|>", eos_token={"content": "<|im_end|>"}
    )
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "generation_config.json").write_text(json.dumps(dict(eos_token_id=[2, 0])))
    return tmp_path


def test_round_trip_and_specials(checkpoint):
    tok = Tokenizer.from_dir(str(checkpoint))
    text = "<|im_start|>say the word, then 42<|im_end|>"
    ids = tok.encode(text)
    assert ids[0] == 1 and ids[-1] == 2
    assert tok.tok.token_to_id("Ġthe") in ids
    assert tok.decode(ids, skip_special=False) == text
    assert tok.decode(ids) == "say the word, then 42"
    assert tok.eos_ids == (2, 0)


def test_chat_template_renders_messages(checkpoint):
    tok = Tokenizer.from_dir(str(checkpoint))
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>user: hi<|im_end|><|im_start|>assistant: "
    assert tok.encode_chat([{"role": "user", "content": "hi"}]) == tok.encode(text)


def test_chat_template_is_compiled_once(checkpoint):
    tok = Tokenizer.from_dir(str(checkpoint))
    tokenizer._compiled_template.cache_clear()
    for word in ("a", "b", "c"):
        assert word in tok.apply_chat_template([{"role": "user", "content": word}])
    info = tokenizer._compiled_template.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_missing_tokenizer_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no tokenizer\.json"):
        Tokenizer.from_dir(str(tmp_path))


def test_template_keywords_reach_the_template(checkpoint):
    tok = Tokenizer.from_dir(str(checkpoint))
    tok.chat_template = CHATML
    user = CHAT[1:2]
    plain = tok.apply_chat_template(user)
    assert plain == "<|im_start|>user\nsay the word<|im_end|>\n<|im_start|>assistant\n"
    assert tok.apply_chat_template(user, enable_thinking=False) == plain + "<think>\n\n</think>\n\n"
    assert tok.encode_chat(user, enable_thinking=False) == tok.encode(
        plain + "<think>\n\n</think>\n\n"
    )


@pytest.mark.parametrize("thinking", [{}, {"enable_thinking": False}])
def test_sft_pair_splits_the_conversation_at_the_generation_prompt(checkpoint, thinking):
    tok = Tokenizer.from_dir(str(checkpoint))
    tok.chat_template = CHATML
    prompt, completion = tok.sft_pair(CHAT, **thinking)
    assert prompt == tok.encode_chat(CHAT[:-1], **thinking)
    full = tok.apply_chat_template(CHAT, add_generation_prompt=False, **thinking)
    assert prompt + completion == tok.encode(full)
    assert tok.decode(completion, skip_special=False) == "the word<|im_end|>\n"
    assert completion[-2] == tok.tok.token_to_id("<|im_end|>") == tok.eos_ids[0]


def test_sft_pair_refuses_a_template_that_is_not_prefix_consistent(checkpoint):
    tok = Tokenizer.from_dir(str(checkpoint))  # TEMPLATE: "assistant: " + "the" tokenizes as "Ġthe"
    with pytest.raises(ValueError, match="not prefix-consistent"):
        tok.sft_pair(CHAT)
    tok.chat_template = CHATML.replace("<|im_start|>assistant\n", "<|im_start|>assistant:\n")
    with pytest.raises(ValueError, match="not prefix-consistent"):
        tok.sft_pair(CHAT)


def test_sft_pair_needs_a_final_assistant_turn_ending_its_turn(checkpoint):
    tok = Tokenizer.from_dir(str(checkpoint))
    tok.chat_template = CHATML
    with pytest.raises(ValueError, match="last message must be the assistant"):
        tok.sft_pair(CHAT[:-1])
    tok.chat_template = CHATML.replace("<|im_end|>", "")
    with pytest.raises(ValueError, match="no end-of-turn token"):
        tok.sft_pair(CHAT)
