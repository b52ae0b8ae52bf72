"""Tokenizer from a checkpoint directory: tokenizer.json, chat template, EOS ids, errors."""

import json

import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("jinja2")

from sublim_jax.llm.tokenizer import Tokenizer, bpe_tokenizer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = (
    "{% for m in messages %}{{ bos_token }}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}{{ bos_token }}assistant: {% endif %}"
)


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


def test_missing_tokenizer_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no tokenizer\.json"):
        Tokenizer.from_dir(str(tmp_path))
