"""Answers of the reference sampler, cut as docs/reference-behaviour.md, section 3, step 9 says.

Expected values for tests of the API, the CLI and the harness: they come from the reference loop
and this independent cut, not from the code under test.
"""

from __future__ import annotations

from collections.abc import Sequence

from diffutron.sampling.reference import reference_sample

ANSWER_END = "[/Answer]"


def reference_answers(model, tokenizer, prompts: Sequence[Sequence[int]], config) -> list[str]:
    """Greedy answers (`config.temperature` must be 0) after each token-id prompt."""
    assert config.temperature == 0, "only greedy answers are reproducible"
    canvas = reference_sample(
        model,
        tokenizer,
        [list(p) for p in prompts],
        max_new_tokens=config.max_new_tokens,
        steps=config.steps,
        block_length=config.block_length,
        cfg_scale=config.cfg_scale,
        repetition_penalty=config.repetition_penalty,
        penalty_scope=config.penalty_scope,
    )
    ends = {tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.mask_token_id}
    answers = []
    for row, prompt in zip(canvas.tolist(), prompts):
        tokens = row[len(prompt) : len(prompt) + config.max_new_tokens]
        end = next((i for i, token in enumerate(tokens) if token in ends), len(tokens))
        text = tokenizer.decode(tokens[:end], skip_special_tokens=True)
        answers.append(text.split(ANSWER_END, 1)[0].strip())
    return answers
