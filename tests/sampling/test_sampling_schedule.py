"""Reveal counts per step (docs/reference-behaviour.md, section 3, step 3)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from diffutron.sampling.reference import reference_transfer_counts
from diffutron.sampling.schedule import reveal_fraction, stochastic_transfer_counts, transfer_counts


@pytest.mark.parametrize(
    ("new_tokens", "steps", "block", "expected_calls", "per_call"),
    [(64, 64, 32, 64, 1), (128, 64, 32, 64, 2), (64, 128, 32, 64, 1)],
)
def test_spec_examples(new_tokens, steps, block, expected_calls, per_call):
    blocks = math.ceil(new_tokens / block)
    counts = [transfer_counts(block, math.ceil(steps / blocks)) for _ in range(blocks)]
    assert sum(len(c) for c in counts) == expected_calls
    assert all(count == per_call for c in counts for count in c)


def test_half_rounds_to_even_and_zero_steps_are_dropped():
    # one mask in two steps: 1 * 1/2 = 0.5 rounds to 0 (dropped), then the last step takes it
    assert transfer_counts(1, 2) == [1]
    # 3 masks in 2 steps: 1.5 -> 2, then 1; 5 masks: 2.5 -> 2, then 3
    assert transfer_counts(3, 2) == [2, 1]
    assert transfer_counts(5, 2) == [2, 3]
    # 2 masks in 4 steps: 0.5 -> 0, 2/3 -> 1, 0.5 -> 0, 1 -> 1
    assert transfer_counts(2, 4) == [1, 1]


def test_linear_fraction_is_one_over_steps_left():
    for steps in (1, 3, 7, 64):
        for step in range(steps):
            assert reveal_fraction(step, steps) == pytest.approx(1 / (steps - step), rel=1e-5)


@given(masked=st.integers(0, 300), steps=st.integers(1, 300))
def test_counts_match_reference_arithmetic(masked, steps):
    counts = transfer_counts(masked, steps)
    assert counts == reference_transfer_counts(masked, steps)
    assert sum(counts) == masked
    assert len(counts) <= min(masked, steps)


@given(masked=st.integers(0, 40), steps=st.integers(1, 40), seed=st.integers(0, 5))
def test_stochastic_counts_fill_the_block(masked, steps, seed):
    counts = stochastic_transfer_counts(masked, steps, torch.Generator().manual_seed(seed))
    assert sum(counts) == masked
    assert all(count > 0 for count in counts)  # no zero step is kept: it would cost a call for nothing
    assert len(counts) <= min(masked, steps)
    assert counts == stochastic_transfer_counts(masked, steps, torch.Generator().manual_seed(seed))
