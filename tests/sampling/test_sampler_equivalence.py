"""The fast sampler against the reference loop (docs/reference-behaviour.md, section 3): at temperature 0
token for token, with guidance and both penalty scopes; as the temperature goes to 0."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffutron import GenerationConfig, sample
from diffutron.sampling.reference import reference_sample
from helpers.prompts import encode_prompts, prompt_texts
from helpers.tiny import build_model, context_sensitive_model

TEXTS = ["Kitap okumak", "Ankara çay bugün hava güzel mi? Kitap okumak insanın ufkunu", "Çay?"]


@pytest.fixture(autouse=True, scope="module")
def two_threads():
    """Multi-threaded BLAS is where row counts change rounding: check exactness there."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=prompt_texts,
    max_new_tokens=st.integers(1, 24),
    steps=st.integers(1, 30),
    block_length=st.integers(1, 24),
    repetition_penalty=st.sampled_from([1.0, 1.2, 0.8, 2.0]),
    penalty_scope=st.sampled_from(["canvas", "generated"]),
    cfg_scale=st.sampled_from([0.0, 0.0, 1.5]),
)
def test_canvas_identical_to_reference(
    tiny_model, tiny_tokenizer, texts, max_new_tokens, steps, block_length, repetition_penalty, penalty_scope, cfg_scale
):
    prompts = encode_prompts(tiny_tokenizer, texts)
    expected = reference_sample(
        tiny_model,
        tiny_tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        steps=steps,
        block_length=block_length,
        cfg_scale=cfg_scale,
        repetition_penalty=repetition_penalty,
        penalty_scope=penalty_scope,
    )
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        steps=steps,
        block_length=block_length,
        temperature=0.0,
        cfg_scale=cfg_scale,
        repetition_penalty=repetition_penalty,
        penalty_scope=penalty_scope,
        early_stop=False,
    )
    actual = sample(tiny_model, tiny_tokenizer, prompts, config)
    assert torch.equal(actual, expected)


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=prompt_texts,
    max_new_tokens=st.integers(1, 16),
    steps=st.integers(1, 16),
    block_length=st.integers(1, 16),
    repetition_penalty=st.sampled_from([1.0, 1.2]),
    cfg_scale=st.sampled_from([0.0, 1.5]),
    remasking=st.sampled_from(["low_confidence", "low_confidence", "random"]),
)
def test_near_zero_temperature_gives_the_greedy_reference(
    tiny_model, tiny_tokenizer, texts, max_new_tokens, steps, block_length, repetition_penalty, cfg_scale, remasking
):
    """The temperature path (noise, Gumbel-max in float64, confidence of the noiseless logits) tends to the
    argmax as T -> 0; at 1e-9 the noise moves an exp(logit) by a factor below 1 + 4e-8, less than a float32
    logit step, so only exact ties could differ. Random remasking at T -> 0: the same multiset of tokens
    cannot be promised, but every generated token is some step's argmax, so it is checked on one-token blocks."""
    prompts = encode_prompts(tiny_tokenizer, texts)
    if remasking == "random":
        block_length = 1
    expected = reference_sample(
        tiny_model,
        tiny_tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        steps=steps,
        block_length=block_length,
        cfg_scale=cfg_scale,
        repetition_penalty=repetition_penalty,
    )
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        steps=steps,
        block_length=block_length,
        temperature=1e-9,
        cfg_scale=cfg_scale,
        repetition_penalty=repetition_penalty,
        remasking=remasking,
        early_stop=False,
        seed=0,
    )
    assert torch.equal(sample(tiny_model, tiny_tokenizer, prompts, config), expected)


def test_guidance_with_rows_of_different_lengths(tiny_tokenizer):
    """CFG over a batch: each row's unconditional copy masks that row's prompt, under its attention mask."""
    model = context_sensitive_model(tiny_tokenizer)
    prompts = encode_prompts(tiny_tokenizer, TEXTS)
    config = GenerationConfig(max_new_tokens=10, steps=10, block_length=5, temperature=0.0, early_stop=False)
    unguided = sample(model, tiny_tokenizer, prompts, config)
    for cfg_scale in (0.5, 2.0):
        expected = reference_sample(
            model,
            tiny_tokenizer,
            prompts,
            max_new_tokens=10,
            steps=10,
            block_length=5,
            cfg_scale=cfg_scale,
            repetition_penalty=config.repetition_penalty,
        )
        guided = sample(model, tiny_tokenizer, prompts, config.replace(cfg_scale=cfg_scale))
        assert torch.equal(guided, expected)
        for row in range(len(prompts)):  # guidance moves every row here, so a wrong row would show
            assert not torch.equal(guided[row], unguided[row])


def test_generated_scope_leaves_the_prompt_unpenalized(tiny_tokenizer):
    """A model that prefers the prompt's first token: penalized from the start with the canvas scope,
    free until generated once with the generated scope."""
    prompts = encode_prompts(tiny_tokenizer, ["Kitap okumak"])
    favourite = prompts[0][0]
    model = build_model(tiny_tokenizer, seed=0)
    with torch.no_grad():
        model.decoder.bias[favourite] += 3.0
    generated = {}
    for scope in ("canvas", "generated"):
        config = GenerationConfig(
            max_new_tokens=8,
            steps=8,
            block_length=8,
            temperature=0.0,
            repetition_penalty=4.0,
            penalty_scope=scope,
            early_stop=False,
        )
        canvas = sample(model, tiny_tokenizer, prompts, config)
        expected = reference_sample(
            model,
            tiny_tokenizer,
            prompts,
            max_new_tokens=8,
            steps=8,
            block_length=8,
            repetition_penalty=4.0,
            penalty_scope=scope,
        )
        assert torch.equal(canvas, expected)
        generated[scope] = canvas[0, len(prompts[0]) :].tolist()
    assert favourite not in generated["canvas"]
    assert favourite in generated["generated"]
