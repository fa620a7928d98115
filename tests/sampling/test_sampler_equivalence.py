"""At temperature 0 the fast sampler reproduces the reference loop token for token."""

from __future__ import annotations

import pytest
import torch
from diffutron.sampling.reference import reference_sample
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffutron import GenerationConfig, sample
from diffutron.lm import Diffutron

WORDS = ["Kitap", " okumak", " güzel", " Ankara", " çay", "?", " bugün", " hava", "\n", " ne demek"]


def _prompts(tokenizer, texts):
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


@pytest.fixture(autouse=True, scope="module")
def two_threads():
    """Multi-threaded BLAS is where row counts change rounding: check exactness there."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


prompt_texts = st.lists(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map("".join).filter(str.strip),
    min_size=1, max_size=3,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=prompt_texts,
    max_new_tokens=st.integers(1, 24),
    steps=st.integers(1, 30),
    block_length=st.integers(1, 24),
    repetition_penalty=st.sampled_from([1.0, 1.2, 0.8]),
    cfg_scale=st.sampled_from([0.0, 0.0, 1.5]),
)
def test_canvas_identical_to_reference(tiny_model, tiny_tokenizer, texts, max_new_tokens, steps,
                                       block_length, repetition_penalty, cfg_scale):
    prompts = _prompts(tiny_tokenizer, texts)
    expected = reference_sample(
        tiny_model, tiny_tokenizer, prompts, max_new_tokens=max_new_tokens, steps=steps,
        block_length=block_length, cfg_scale=cfg_scale, repetition_penalty=repetition_penalty,
    )
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, steps=steps, block_length=block_length, temperature=0.0,
        cfg_scale=cfg_scale, repetition_penalty=repetition_penalty, early_stop=False,
    )
    actual = sample(tiny_model, tiny_tokenizer, prompts, config)
    assert torch.equal(actual, expected)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=prompt_texts, steps=st.integers(4, 40), block_length=st.integers(4, 40),
       seed=st.integers(0, 3))
def test_early_stop_gives_identical_answers(tiny_tokenizer, texts, steps, block_length, seed):
    from helpers.tiny import build_model

    model = build_model(tiny_tokenizer, seed=seed)
    _make_end_likely(model, tiny_tokenizer)
    lm = Diffutron(model, tiny_tokenizer)
    base = GenerationConfig(max_new_tokens=40, steps=steps, block_length=block_length, temperature=0.0)
    assert lm.generate(texts, base) == lm.generate(texts, base.replace(early_stop=False))


def test_early_stop_saves_model_calls(tiny_tokenizer):
    from helpers.tiny import build_model

    model = build_model(tiny_tokenizer, seed=1)
    _make_end_likely(model, tiny_tokenizer)
    lm = Diffutron(model, tiny_tokenizer)
    calls = {}
    for early in (True, False):
        events = []
        config = GenerationConfig(max_new_tokens=64, steps=64, block_length=16, temperature=0.0,
                                  early_stop=early)
        answer = lm.chat("Kitap ne demek?", config, callback=events.append)
        calls[early] = (events[-1].calls, answer)
    assert calls[True][1] == calls[False][1]
    assert calls[False][0] == 64
    assert calls[True][0] < calls[False][0]


def _make_end_likely(model, tokenizer):
    """Bias the output layer towards EOS so that answers end inside the canvas."""
    with torch.no_grad():
        model.decoder.bias[tokenizer.eos_token_id] += 4.0
