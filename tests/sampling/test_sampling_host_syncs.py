"""The sampler loop reads tensors back to the host a few times per model call, however many rows it holds.

On a GPU each such read (a `.tolist()`, a `bool(tensor)`, a `nonzero`) makes the host wait for the
device, so a loop with reads per row stalls more the larger the batch. `HostReads` counts them on
the CPU too; the number of reads per model call is measured as the difference between two runs that
differ only in their number of calls, so the one-time set-up does not count.
"""

from __future__ import annotations

import pytest

from diffutron import GenerationConfig, sample
from helpers.syncs import HostReads

READS_PER_CALL = 2  # the masks due per row before the model call, the decided answers after it
# mode: sampler options, and the reads it may add per call
MODES = {
    "model card, seeded": ({"temperature": 0.5, "seed": 1}, 0),
    "greedy": ({"temperature": 0.0}, 0),
    "generated-only penalty, random remasking": (
        {"temperature": 0.7, "seed": 2, "penalty_scope": "generated", "remasking": "random"},
        0,
    ),
    "guidance": ({"temperature": 0.3, "seed": 4, "cfg_scale": 1.5}, 0),
    "sampling controls": (
        {
            "temperature": 0.7,
            "seed": 7,
            "top_k": 20,
            "top_p": 0.9,
            "min_p": 0.05,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.3,
            "logit_bias": {5: -100},
        },
        0,
    ),
    "threshold, dual cache": ({"temperature": 0.3, "seed": 5, "threshold": 0.9, "cache": "dual"}, 0),
    # the prefix cache reads where its earliest row starts
    "factor, prefix cache": ({"temperature": 0.3, "seed": 6, "factor": 0.5, "cache": "prefix"}, 1),
    # the rows' schedules are read once per block, all rows together, so calls per block vary with the rows
    "stochastic transfer": ({"temperature": 0.5, "seed": 3, "stochastic_transfer": True}, 1),
}


def _reads_and_calls(model, tokenizer, prompts, options, max_new_tokens):
    calls = []
    hook = model.model.register_forward_hook(lambda *_: calls.append(1))
    config = GenerationConfig(max_new_tokens=max_new_tokens, steps=max_new_tokens, block_length=8, **options)
    try:
        with HostReads() as reads:
            sample(model, tokenizer, prompts, config, stop_texts=("never written",))
    finally:
        hook.remove()
    return reads.count, len(calls)


def _reads_per_call(model, tokenizer, prompts, options):
    short_reads, short_calls = _reads_and_calls(model, tokenizer, prompts, options, 16)
    long_reads, long_calls = _reads_and_calls(model, tokenizer, prompts, options, 32)
    assert long_calls > short_calls
    return (long_reads - short_reads) / (long_calls - short_calls)


@pytest.mark.parametrize("mode", MODES)
def test_host_reads_per_call_are_few_and_do_not_grow_with_the_rows(tiny_model, tiny_tokenizer, mode):
    options, extra = MODES[mode]
    prompt = tiny_tokenizer("Kitap okumak", add_special_tokens=False)["input_ids"]
    alone = _reads_per_call(tiny_model, tiny_tokenizer, [prompt], options)
    eight = _reads_per_call(tiny_model, tiny_tokenizer, [prompt] * 8, options)
    assert alone <= READS_PER_CALL + extra and eight <= READS_PER_CALL + extra
    if mode != "stochastic transfer":
        assert eight == alone


def test_padded_rows_add_only_the_models_own_mask_checks(tiny_model, tiny_tokenizer):
    """Prompts of different lengths need an attention mask, which the model inspects once per call."""
    prompts = [tiny_tokenizer(text, add_special_tokens=False)["input_ids"] for text in ("Kitap", "Çay bugün güzel")]
    options, _ = MODES["model card, seeded"]
    two = _reads_per_call(tiny_model, tiny_tokenizer, prompts, options)
    eight = _reads_per_call(tiny_model, tiny_tokenizer, prompts * 4, options)
    assert eight == two == READS_PER_CALL + 2
