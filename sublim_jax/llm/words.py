"""A word-level tokenizer built in code: special and chat tokens, the numbers 0..N as single
tokens, and every word or punctuation mark of given texts. A word carries its leading space
(" owl"); other whitespace characters are tokens of their own and the decoder concatenates, so
decoding reproduces separators exactly. The small models trained here (the pipeline's ``tiny``
preset, the toy experiment) use it."""

import re
from collections.abc import Iterable, Sequence

from sublim_jax.llm.tokenizer import Tokenizer

PAD, UNK, START, END = "<pad>", "<unk>", "<|im_start|>", "<|im_end|>"


SPECIALS = (PAD, UNK, START, END)


WHITESPACE = (" ", "\n", "\t")


SPLIT = r" ?[A-Za-z]+|\d+|[,;] ?|\s|[^\sA-Za-z\d]"


CHAT_TEMPLATE = (
    "{% for m in messages %}" + START + "{{ m['role'] }}\n{{ m['content'] }}" + END + "\n"
    "{% endfor %}{% if add_generation_prompt %}" + START + "assistant\n{% endif %}"
)


def pieces(texts: Iterable[str]) -> list[str]:
    """The tokens of ``texts`` under ``SPLIT``, in first-seen order."""
    return list(dict.fromkeys(p for t in texts for p in re.findall(SPLIT, t)))


def vocabulary(texts: Iterable[str], max_number: int = 999) -> list[str]:
    """Specials, then ``"0"..str(max_number)``, then the other pieces of ``texts``."""
    nums = [str(i) for i in range(max_number + 1)]
    words = [p for p in pieces(texts) if p not in set(nums) and p not in WHITESPACE]
    return [*SPECIALS, *WHITESPACE, *nums, *words]


def word_tokenizer(vocab: Sequence[str], chat_template: str = CHAT_TEMPLATE) -> Tokenizer:
    """A ``WordLevel`` tokenizer over ``vocab`` with ``SPLIT`` pre-tokenisation."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    tok = HFTokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(SPLIT), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    special = dict(pad_token=PAD, eos_token=END, bos_token=START)
    return Tokenizer(tok, chat_template, [vocab.index(END)], special)
