"""Temperature, random remasking and stochastic transfer: the draws follow the distributions of
docs/reference-behaviour.md, section 3, and the distributions of the reference loop.

With randomness on, the fast sampler draws only at the positions it can commit and the reference
over the whole canvas, so single outputs differ; their distributions are compared instead, with
fixed seeds and the bound of helpers/stats.py (these tests cannot be flaky).
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch
from scipy import stats

from diffutron import GenerationConfig, sample
from diffutron.sampling.reference import reference_sample
from diffutron.sampling.schedule import stochastic_transfer_counts
from helpers.stats import P_MIN, goodness_of_fit, same_distribution
from helpers.steered import favoured_logits

RUNS = 150  # seeded runs per distribution compared


def _encode(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def fixed(tiny_tokenizer):
    """Logits 2.0 .. -1.5 on eight tokens and -30 on every other one (the mask token included)."""
    return favoured_logits(len(tiny_tokenizer))


def _softmax(fixed, temperature):
    probabilities = (fixed.fixed.double() / temperature).softmax(dim=0)
    return dict(enumerate(probabilities.tolist()))


def _one_step(new_tokens, **options):
    """All `new_tokens` positions drawn in one model call: independent draws from the same logits."""
    return GenerationConfig(
        max_new_tokens=new_tokens, steps=1, block_length=new_tokens, repetition_penalty=1.0, early_stop=False, **options
    )


# --- temperature: the Gumbel-max draw ----------------------------------------------------


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_draws_follow_softmax_of_logits_over_temperature(fixed, tiny_tokenizer, temperature):
    draws = 3000
    canvas = sample(fixed, tiny_tokenizer, [[20]], _one_step(draws, temperature=temperature, seed=0))
    assert goodness_of_fit(canvas[0, 1:].tolist(), _softmax(fixed, temperature)) > P_MIN
    torch.manual_seed(0)
    reference = reference_sample(
        fixed, tiny_tokenizer, [[20]], max_new_tokens=draws, steps=1, block_length=draws, temperature=temperature
    )
    assert goodness_of_fit(reference[0, 1:].tolist(), _softmax(fixed, temperature)) > P_MIN


def test_temperature_changes_the_distribution(fixed, tiny_tokenizer):
    """The test above has the power to tell temperatures apart: T = 0.5 draws are not softmax(logits)."""
    canvas = sample(fixed, tiny_tokenizer, [[20]], _one_step(3000, temperature=0.5, seed=0))
    assert goodness_of_fit(canvas[0, 1:].tolist(), _softmax(fixed, 1.0)) < 1e-12


def test_low_temperature_approaches_the_argmax(fixed, tiny_tokenizer):
    canvas = sample(fixed, tiny_tokenizer, [[20]], _one_step(500, temperature=0.01, seed=0))
    assert set(canvas[0, 1:].tolist()) == {10}
    spread = sample(fixed, tiny_tokenizer, [[20]], _one_step(500, temperature=0.3, seed=0))
    assert len(set(spread[0, 1:].tolist())) > 1


def test_seed_fixes_the_draws_and_different_seeds_differ(fixed, tiny_tokenizer):
    draw = lambda seed: sample(fixed, tiny_tokenizer, [[20]], _one_step(50, temperature=1.0, seed=seed))  # noqa: E731
    assert torch.equal(draw(3), draw(3))
    assert len({tuple(draw(seed)[0].tolist()) for seed in range(4)}) == 4


# --- temperature on a real model: the distribution of the reference loop ----------------


def _sampler_outputs(model, tokenizer, prompt, config, runs=RUNS):
    """The generated tokens of `runs` single-row calls with seeds 0, 1, ..."""
    return [
        tuple(sample(model, tokenizer, [prompt], config.replace(seed=seed))[0, len(prompt) :].tolist())
        for seed in range(runs)
    ]


def _reference_outputs(model, tokenizer, prompt, runs=RUNS, **options):
    """The reference draws every row independently: one batched call gives `runs` samples."""
    torch.manual_seed(0)
    canvas = reference_sample(model, tokenizer, [prompt] * runs, **options)
    return [tuple(row) for row in canvas[:, len(prompt) :].tolist()]


def test_temperature_sampling_has_the_reference_distribution(tiny_model, tiny_tokenizer):
    prompt = _encode(tiny_tokenizer, "Kitap okumak")
    options = {"max_new_tokens": 3, "steps": 3, "block_length": 3, "temperature": 0.3, "repetition_penalty": 1.2}
    ours = _sampler_outputs(tiny_model, tiny_tokenizer, prompt, GenerationConfig(early_stop=False, **options))
    theirs = _reference_outputs(tiny_model, tiny_tokenizer, prompt, **options)
    for position in range(3):  # each position's token: independent across runs
        assert same_distribution([o[position] for o in ours], [o[position] for o in theirs]) > P_MIN / 3
    assert len(set(ours)) > 10  # really random


# --- random remasking ----------------------------------------------------------------------


def test_random_remasking_commits_positions_in_uniform_order(tiny_model, tiny_tokenizer):
    prompt = _encode(tiny_tokenizer, "Kitap okumak")
    config = GenerationConfig(
        max_new_tokens=4, steps=4, block_length=4, temperature=0.0, remasking="random", early_stop=False
    )
    orders = []
    for seed in range(RUNS):
        events = []
        sample(tiny_model, tiny_tokenizer, [prompt], config.replace(seed=seed), callback=events.append)
        assert [int(e.committed.sum()) for e in events] == [1, 1, 1, 1]
        orders.append(tuple(int(e.committed[0].nonzero()) - len(prompt) for e in events))
    uniform = {order: 1 / 24 for order in itertools.permutations(range(4))}
    assert goodness_of_fit(orders, uniform) > P_MIN


def test_random_remasking_has_the_reference_distribution(tiny_model, tiny_tokenizer):
    prompt = _encode(tiny_tokenizer, "Bugün hava")
    options = {
        "max_new_tokens": 4,
        "steps": 4,
        "block_length": 4,
        "temperature": 0.0,
        "remasking": "random",
        "repetition_penalty": 1.2,
    }
    ours = _sampler_outputs(tiny_model, tiny_tokenizer, prompt, GenerationConfig(early_stop=False, **options))
    theirs = _reference_outputs(tiny_model, tiny_tokenizer, prompt, **options)
    assert len(set(ours)) > 1  # the order changes the output here
    assert same_distribution(ours, theirs) > P_MIN


# --- stochastic transfer -------------------------------------------------------------------


def _count_distribution(masked: int, steps: int) -> dict[tuple[int, ...], float]:
    """Exact probabilities of the per-step reveal counts: count_j ~ Binomial(left, 1 / (steps - j))."""
    outcomes: dict[tuple[int, ...], float] = {}

    def walk(step, left, counts, probability):
        if step == steps:
            outcomes[tuple(counts)] = outcomes.get(tuple(counts), 0.0) + probability
            return
        for count in range(left + 1):
            chance = stats.binom.pmf(count, left, 1 / (steps - step))
            if chance > 0:
                walk(step + 1, left - count, [*counts, count], probability * chance)

    walk(0, masked, [], 1.0)
    return outcomes


def test_stochastic_counts_are_sequential_binomials():
    generator = torch.Generator().manual_seed(0)
    counts = [tuple(stochastic_transfer_counts(6, 3, generator)) for _ in range(4000)]
    assert all(sum(row) == 6 for row in counts)
    assert goodness_of_fit(counts, _nonzero(_count_distribution(6, 3))) > P_MIN


def _nonzero(distribution):
    """The same counts with the steps that reveal nothing left out (they cost no model call)."""
    merged: Counter = Counter()
    for counts, probability in distribution.items():
        merged[tuple(c for c in counts if c > 0)] += probability
    return dict(merged)


def test_stochastic_transfer_in_the_sampler(tiny_model, tiny_tokenizer):
    """Per call, the number of positions committed follows the binomial schedule; each seed its own."""
    prompt = _encode(tiny_tokenizer, "Kitap okumak")
    config = GenerationConfig(
        max_new_tokens=12, steps=6, block_length=6, temperature=0.0, stochastic_transfer=True, early_stop=False
    )
    per_block = []
    for seed in range(RUNS):
        events = []
        canvas = sample(tiny_model, tiny_tokenizer, [prompt], config.replace(seed=seed), callback=events.append)
        assert not bool((canvas == tiny_tokenizer.mask_token_id).any())
        for block in (0, 1):
            per_block.append(tuple(int(e.committed.sum()) for e in events if e.blocks[0] == block))
    assert goodness_of_fit(per_block, _nonzero(_count_distribution(6, 3))) > P_MIN


def test_stochastic_transfer_has_the_reference_distribution(tiny_model, tiny_tokenizer):
    prompt = _encode(tiny_tokenizer, "Bugün hava")
    options = {
        "max_new_tokens": 4,
        "steps": 4,
        "block_length": 4,
        "temperature": 0.0,
        "stochastic_transfer": True,
        "repetition_penalty": 1.2,
    }
    ours = _sampler_outputs(tiny_model, tiny_tokenizer, prompt, GenerationConfig(early_stop=False, **options))
    theirs = _reference_outputs(tiny_model, tiny_tokenizer, prompt, **options)
    assert len(set(ours)) > 1
    assert same_distribution(ours, theirs) > P_MIN


def test_stochastic_transfer_takes_no_call_that_reveals_nothing(tiny_model, tiny_tokenizer):
    """Steps where no row reveals anything are dropped; 8 masks in 8 steps have many such steps."""
    prompt = _encode(tiny_tokenizer, "Kitap okumak")
    config = GenerationConfig(
        max_new_tokens=8, steps=8, block_length=8, temperature=0.0, stochastic_transfer=True, early_stop=False
    )
    calls = set()
    for seed in range(20):
        events = []
        sample(tiny_model, tiny_tokenizer, [prompt, prompt[:3]], config.replace(seed=seed), callback=events.append)
        assert all(bool(e.committed.any()) for e in events)
        calls.add(len(events))
    assert len(calls) > 1
