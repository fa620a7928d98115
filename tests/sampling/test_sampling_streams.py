"""A seeded prompt gets the same answer alone or in any batch, at any position (per-row streams)."""

from __future__ import annotations

import pytest
import torch

from diffutron import GenerationConfig, sample
from diffutron.errors import DiffutronError
from diffutron.lm import Diffutron

PROMPTS = ["Kitap okumak ne demek?", "Bugün hava", "Çay Türk kültüründe ne anlama gelir?", "Ankara", "Güneş"]

SETTINGS = {
    "gumbel": dict(temperature=1.0),
    "stochastic transfer, random remasking": dict(temperature=0.8, stochastic_transfer=True, remasking="random"),
    "threshold": dict(temperature=1.0, threshold=0.2, repetition_penalty=1.0),
}


@pytest.fixture(scope="module")
def lm(tiny_model, tiny_tokenizer):
    return Diffutron(tiny_model, tiny_tokenizer)


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
def test_seeded_answer_does_not_depend_on_the_batch(lm, settings):
    config = GenerationConfig(max_new_tokens=12, steps=8, block_length=5, seed=11, **settings)
    together = lm.generate(PROMPTS, config)
    alone = [lm.generate([prompt], config.replace(seed=11 + index))[0] for index, prompt in enumerate(PROMPTS)]
    assert together == alone
    # split into batches of other sizes: each batch passes the position of its first prompt
    in_batches = lm.generate(PROMPTS[:2], config) + lm.generate(PROMPTS[2:], config, first_index=2)
    assert in_batches == together
    assert lm.generate(PROMPTS[3:4], config, first_index=3) == together[3:4]
    assert len(set(together)) > 1  # the rows really drew different numbers


def test_explicit_row_seeds_override_the_config_seed(lm, tiny_model, tiny_tokenizer):
    config = GenerationConfig(max_new_tokens=10, steps=10, block_length=10, temperature=1.0, seed=3)
    prompts = [lm.encode(text) for text in PROMPTS[:3]]
    expected = sample(tiny_model, tiny_tokenizer, [prompts[2]], config.replace(seed=40))
    canvas = sample(tiny_model, tiny_tokenizer, prompts, config, row_seeds=[7, None, 40])
    width = len(prompts[2]) + 10
    assert torch.equal(canvas[2, :width], expected[0])
    with pytest.raises(DiffutronError, match="row_seeds has 2 entries for 3 rows"):
        sample(tiny_model, tiny_tokenizer, prompts, config, row_seeds=[1, 2])


def test_same_seed_in_different_rows_gives_the_same_answer(lm):
    """n copies of one request with seeds s, s+1 equal the rows of a call over n copies seeded s."""
    config = GenerationConfig(max_new_tokens=12, steps=12, block_length=12, temperature=1.0, seed=5)
    copies = lm.generate([PROMPTS[0]] * 3, config)
    assert copies == [lm.generate([PROMPTS[0]], config.replace(seed=5 + index))[0] for index in range(3)]


def test_a_callback_can_drop_a_row_and_its_return_value_is_ignored(lm, tiny_model, tiny_tokenizer):
    config = GenerationConfig(max_new_tokens=8, steps=8, block_length=8, temperature=0.0, early_stop=False)
    prompts = [lm.encode(text) for text in PROMPTS[:2]]
    plain = sample(tiny_model, tiny_tokenizer, prompts, config)
    ignored = sample(tiny_model, tiny_tokenizer, prompts, config, callback=lambda event: (None, None))
    assert torch.equal(ignored, plain)  # a callback returning something drops nothing
    seen = []

    def drop_second(event):
        seen.append(event.finished.tolist())
        event.drop(1)

    dropped = sample(tiny_model, tiny_tokenizer, prompts, config, callback=drop_second)
    assert torch.equal(dropped[0], plain[0])  # the other row is decoded as before
    assert (dropped[1] == tiny_tokenizer.mask_token_id).sum() == 7  # one call, then left alone
    assert seen[1] == [False, True]
