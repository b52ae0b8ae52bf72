"""Tokenizers (``tokenizers``) and chat templates (jinja2), from a checkpoint directory or GGUF.

A directory gives ``tokenizer.json`` plus ``tokenizer_config.json`` (chat template, special
tokens) and ``generation_config.json`` (EOS ids). A GGUF file's metadata gives the byte-level BPE
vocabulary, merges, pre-tokeniser kind and template; ``bpe_tokenizer`` rebuilds the tokenizer.
"""

import functools
import json
import os
from collections.abc import Sequence
from typing import Any

# Pre-tokeniser split patterns of llama.cpp's ``tokenizer.ggml.pre`` kinds (byte-level BPE).
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_QWEN2 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3 = _QWEN2.replace(r"|\p{N}|", r"|\p{N}{1,3}|")
PRE_TOKENIZERS = {"gpt2": _GPT2, "smollm": _GPT2, "qwen2": _QWEN2, "llama-bpe": _LLAMA3}


class Tokenizer:
    """Text <-> ids, plus the model's chat template."""

    def __init__(
        self,
        tok: Any,
        chat_template: str | None = None,
        eos_ids: Sequence[int] = (),
        special: dict[str, str] | None = None,
    ):
        self.tok = tok
        self.chat_template = chat_template
        self.eos_ids = tuple(eos_ids)
        self.special = dict(special or {})

    @classmethod
    def from_dir(cls, path: str) -> "Tokenizer":
        """Read ``tokenizer.json`` and, if present, the tokenizer and generation configs."""
        import tokenizers

        file = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(file):
            raise FileNotFoundError(f"no tokenizer.json in {path!r}")
        tok = tokenizers.Tokenizer.from_file(file)
        config = _read_json(os.path.join(path, "tokenizer_config.json"))
        special = {
            k: _content(config[k]) for k in ("bos_token", "eos_token", "pad_token") if config.get(k)
        }
        eos = _as_list(_read_json(os.path.join(path, "generation_config.json")).get("eos_token_id"))
        if not eos and "eos_token" in special:
            eos = [tok.token_to_id(special["eos_token"])]
        return cls(tok, config.get("chat_template"), eos, special)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; special-token strings in it map to their single ids."""
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=skip_special)

    def apply_chat_template(
        self,
        messages: Sequence[dict[str, str]],
        add_generation_prompt: bool = True,
        **kwargs: Any,
    ) -> str:
        """Render ``messages`` (``{"role", "content"}`` dicts) with the model's jinja2 template;
        ``kwargs`` reach the template as variables (e.g. Qwen3's ``enable_thinking=False``)."""
        if not self.chat_template:
            raise ValueError("this tokenizer has no chat template")
        template = _compiled_template(self.chat_template)
        variables = {**self.special, **kwargs}
        return template.render(
            messages=list(messages), add_generation_prompt=add_generation_prompt, **variables
        )

    def encode_chat(self, messages: Sequence[dict[str, str]], **kwargs: Any) -> list[int]:
        return self.encode(self.apply_chat_template(messages, **kwargs))

    def sft_pair(
        self, messages: Sequence[dict[str, str]], **kwargs: Any
    ) -> tuple[list[int], list[int]]:
        """``(prompt_ids, completion_ids)`` for fine-tuning on the final assistant turn.

        The prompt renders the earlier messages with the generation prompt, as sampling sees
        them; the completion is the rest of the whole conversation's tokens, end-of-turn token
        included. Raises ``ValueError`` unless ``prompt + completion`` tokenizes exactly as the
        whole conversation does (a template that renders the last turn differently from the
        generation prompt, or a boundary where tokens would merge)."""
        if not messages or messages[-1].get("role") != "assistant":
            raise ValueError("the last message must be the assistant turn to train on")
        prompt = self.apply_chat_template(messages[:-1], add_generation_prompt=True, **kwargs)
        full = self.apply_chat_template(messages, add_generation_prompt=False, **kwargs)
        prompt_ids, full_ids = self.encode(prompt), self.encode(full)
        if full_ids[: len(prompt_ids)] != prompt_ids:
            raise ValueError(
                "the chat template is not prefix-consistent: the conversation's tokens do not "
                f"start with the prompt's.\nprompt: {prompt!r}\nfull:   {full!r}"
            )
        completion_ids = full_ids[len(prompt_ids) :]
        if not set(completion_ids) & set(self.eos_ids):
            raise ValueError(
                f"the completion {self.decode(completion_ids, skip_special=False)!r} has no "
                f"end-of-turn token (eos_ids={self.eos_ids})"
            )
        return prompt_ids, completion_ids


def bpe_tokenizer(
    tokens: Sequence[str], merges: Sequence[str], specials: Sequence[str], pre: str = "gpt2"
) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` from a vocabulary list and ``"a b"`` merges."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    if pre not in PRE_TOKENIZERS:
        raise ValueError(f"unsupported pre-tokenizer {pre!r}; supported: {sorted(PRE_TOKENIZERS)}")
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = HFTokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    split = pre_tokenizers.Split(Regex(PRE_TOKENIZERS[pre]), behavior="isolated")
    steps = [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    if pre == "smollm":
        steps.insert(0, pre_tokenizers.Digits(individual_digits=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


@functools.lru_cache(maxsize=16)
def _compiled_template(source: str):
    """The jinja2 template of ``source``, compiled once (rendering is per prompt)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env.from_string(source)


def _raise(message: str) -> None:
    raise ValueError(message)


def _read_json(file: str) -> dict[str, Any]:
    if not os.path.isfile(file):
        return {}
    with open(file) as f:
        return json.load(f)


def _content(token: str | dict[str, Any]) -> str:
    return token["content"] if isinstance(token, dict) else token


def _as_list(x: int | list[int] | None) -> list[int]:
    return [] if x is None else [x] if isinstance(x, int) else list(x)
