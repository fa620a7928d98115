"""A position where the model's best candidate is the mask token stays open, as in the reference.

The reference writes the mask back there, and the position stays eligible at later steps and in
later blocks (only positions after the current block's end are cut): docs/reference-behaviour.md,
section 3. Canvases are compared with the reference loop at temperature 0.
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers.modeling_outputs import MaskedLMOutput

from diffutron import GenerationConfig, sample
from diffutron.sampling.reference import reference_sample
from helpers.prompts import encode_prompts, prompt_texts


class MaskPreferring(torch.nn.Module):
    """A tiny masked LM whose best candidate is the mask token itself at every `period`-th
    position while the position after it is still masked: committing it leaves the position
    masked until its neighbour is filled, often in a later block."""

    def __init__(self, inner: torch.nn.Module, mask_id: int, period: int) -> None:
        super().__init__()
        self.inner, self.mask_id, self.period = inner, mask_id, period

    def forward(self, input_ids, attention_mask=None):
        logits = self.inner(input_ids=input_ids, attention_mask=attention_mask).logits
        next_is_mask = torch.zeros_like(input_ids, dtype=torch.bool)
        next_is_mask[:, :-1] = input_ids[:, 1:] == self.mask_id
        chosen = torch.arange(input_ids.shape[1]) % self.period == self.period - 1
        barely_best = logits.max(dim=-1).values + 0.01  # the best, but not confidently: filled late
        logits[..., self.mask_id] = torch.where(chosen & next_is_mask, barely_best, logits[..., self.mask_id])
        return MaskedLMOutput(logits=logits)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=prompt_texts,
    max_new_tokens=st.integers(2, 24),
    steps=st.integers(1, 30),
    block_length=st.integers(1, 9),
    period=st.integers(2, 5),
    repetition_penalty=st.sampled_from([1.0, 1.2]),
    cfg_scale=st.sampled_from([0.0, 0.0, 1.5]),
)
def test_masks_chosen_by_the_model_stay_open_like_the_reference(
    tiny_model, tiny_tokenizer, texts, max_new_tokens, steps, block_length, period, repetition_penalty, cfg_scale
):
    model = MaskPreferring(tiny_model, tiny_tokenizer.mask_token_id, period)
    prompts = encode_prompts(tiny_tokenizer, texts)
    expected = reference_sample(
        model,
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
        temperature=0.0,
        cfg_scale=cfg_scale,
        repetition_penalty=repetition_penalty,
        early_stop=False,
    )
    assert torch.equal(sample(model, tiny_tokenizer, prompts, config), expected)


def test_a_mask_left_open_is_filled_in_a_later_block(tiny_model, tiny_tokenizer):
    """Uneven blocks (5, 5, 3) and prompts of different lengths: the last position of a block
    keeps the mask until the next block fills its neighbour, then gets a token."""
    model = MaskPreferring(tiny_model, tiny_tokenizer.mask_token_id, period=3)
    prompts = encode_prompts(tiny_tokenizer, ["Kitap okumak güzel", "Ankara çay bugün hava güzel mi?", "Çay?"])
    config = GenerationConfig(
        max_new_tokens=13, steps=13, block_length=5, temperature=0.0, repetition_penalty=1.0, early_stop=False
    )
    events = []
    canvas = sample(model, tiny_tokenizer, prompts, config, callback=events.append)
    late = [
        (row, position)
        for event in events
        for row, prompt in enumerate(prompts)
        for position in event.committed[row].nonzero().flatten().tolist()
        if position < len(prompt) + event.blocks[row] * config.block_length
    ]
    assert late, "no mask of an earlier block was filled later: the model does not test the rule"
    assert all(canvas[row, position] != tiny_tokenizer.mask_token_id for row, position in late)
    expected = reference_sample(model, tiny_tokenizer, prompts, max_new_tokens=13, steps=13, block_length=5)
    assert torch.equal(canvas, expected)


def test_a_row_whose_schedule_ended_neither_commits_nor_draws(tiny_model, tiny_tokenizer):
    """Stochastic transfer gives each row a schedule of its own length; in a batch, a row whose schedule
    has ended waits (count 0) while the others go on. With a mask it left open still there, it must
    neither commit it nor draw random numbers for it, or its answer would differ from its answer alone."""
    model = MaskPreferring(tiny_model, tiny_tokenizer.mask_token_id, period=2)
    texts = ["Kitap okumak güzel", "Ankara çay bugün hava güzel mi?", "Çay?", "Bugün hava", "Güneş doğudan doğar"]
    prompts = encode_prompts(tiny_tokenizer, texts)
    config = GenerationConfig(
        max_new_tokens=15,
        steps=15,
        block_length=5,
        temperature=0.8,
        stochastic_transfer=True,
        seed=7,
        repetition_penalty=1.0,
        early_stop=False,
    )
    together = sample(model, tiny_tokenizer, prompts, config)
    for row, prompt in enumerate(prompts):
        alone = sample(model, tiny_tokenizer, [prompt], config.replace(seed=7 + row))
        answer = slice(len(prompt), len(prompt) + config.max_new_tokens)
        assert together[row, answer].tolist() == alone[0, answer].tolist(), f"row {row}"
