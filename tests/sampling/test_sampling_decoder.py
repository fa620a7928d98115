"""The Decoder behind continuous batching: rows join a running decoder and leave it, each decoded as if alone."""

from __future__ import annotations

import pytest
import torch

from diffutron import GenerationConfig, sample
from diffutron.errors import DiffutronError
from diffutron.model.tokens import SpecialIds
from diffutron.sampling.sampler import Decoder, build_canvas
from helpers.tiny import context_sensitive_model

PROMPTS = ["Kitap okumak ne demek?", "Bugün", "Çay Türk kültüründe ne anlama gelir?", "Ankara", "Güneş nereden doğar"]
NEW_TOKENS = 12
MODES = {
    "gumbel": dict(temperature=1.0),
    "penalty, random remasking": dict(temperature=0.8, repetition_penalty=1.3, remasking="random"),
    "threshold": dict(temperature=1.0, threshold=0.2, repetition_penalty=1.0),
    "factor, guidance": dict(temperature=0.9, factor=1.0, cfg_scale=1.0),
    "threshold, dual cache": dict(temperature=1.0, threshold=0.2, cache="dual"),
    "factor, prefix cache, guidance": dict(temperature=0.9, factor=1.0, cache="prefix", cfg_scale=1.0),
    "count schedule, dual cache refreshed every 2": dict(temperature=0.7, cache="dual", refresh_every=2),
}


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _staggered(model, tokenizer, prompts, config, seeds, every: int) -> tuple[dict[int, list[int]], int]:
    """Row i joins at call every * i; a row leaves as soon as it is done. Returns each row's canvas and
    the most rows decoded together."""
    ids = SpecialIds.from_tokenizer(tokenizer)
    decoder = Decoder(model, tokenizer, config, masks=NEW_TOKENS)
    waiting = list(range(len(prompts)))
    inside: list[int] = []  # prompt index of each decoder row
    results: dict[int, list[int]] = {}
    most = 0

    def take_done() -> None:
        leaving = [row for row, done in enumerate(decoder.done()) if done]
        for row in leaving:
            results[inside[row]] = decoder.canvas[row, : len(prompts[inside[row]]) + NEW_TOKENS].tolist()
        decoder.remove(leaving)
        inside[:] = [index for row, index in enumerate(inside) if row not in leaving]

    while waiting or inside:
        if waiting and (decoder.calls >= every * waiting[0] or not inside):
            index = waiting.pop(0)
            decoder.add(build_canvas([prompts[index]], NEW_TOKENS, ids, torch.device("cpu")), [seeds[index]])
            inside.append(index)
        most = max(most, decoder.rows)
        decoder.step()
        take_done()
    return results, most


@pytest.fixture(scope="module")
def sensitive(tiny_tokenizer):
    """A model whose outputs depend strongly on context: a row's cache refreshed at another row's
    call, or computed with another row's block, changes its answer."""
    return context_sensitive_model(tiny_tokenizer)


@pytest.mark.parametrize("mode", MODES)
def test_rows_that_join_late_and_leave_early_decode_as_they_would_alone(sensitive, tiny_tokenizer, mode):
    config = GenerationConfig(max_new_tokens=NEW_TOKENS, steps=8, block_length=5, early_stop=False, **MODES[mode])
    prompts = [_encode(tiny_tokenizer, text) for text in PROMPTS]
    seeds = [100 + index for index in range(len(prompts))]
    results, most = _staggered(sensitive, tiny_tokenizer, prompts, config, seeds, every=3)
    assert most >= 3  # rows of different lengths, at different blocks, really shared the calls
    for index, prompt in enumerate(prompts):
        alone = sample(sensitive, tiny_tokenizer, [prompt], config, row_seeds=[seeds[index]])[0].tolist()
        assert results[index] == alone, f"row {index} ({PROMPTS[index]!r})"


def test_the_canvas_widens_for_a_longer_row_and_narrows_when_it_leaves(tiny_model, tiny_tokenizer):
    ids = SpecialIds.from_tokenizer(tiny_tokenizer)
    short, long = _encode(tiny_tokenizer, "Ankara"), _encode(tiny_tokenizer, PROMPTS[2])
    decoder = Decoder(tiny_model, tiny_tokenizer, GenerationConfig(max_new_tokens=4, steps=4), masks=4)
    decoder.add(build_canvas([short], 4, ids, torch.device("cpu")), [1])
    decoder.step()
    decoder.add(build_canvas([long], 4, ids, torch.device("cpu")), [2])
    assert decoder.canvas.shape == (2, len(long) + 4)
    assert bool((decoder.canvas[0, len(short) + 4 :] == ids.eos).all())  # padding, not attended to
    decoder.remove([1])
    assert decoder.canvas.shape == (1, len(short) + 4)


def test_with_stochastic_transfer_rows_move_together_and_none_join(tiny_model, tiny_tokenizer):
    ids = SpecialIds.from_tokenizer(tiny_tokenizer)
    config = GenerationConfig(
        max_new_tokens=8, steps=8, block_length=4, temperature=0.5, seed=3, stochastic_transfer=True
    )
    decoder = Decoder(tiny_model, tiny_tokenizer, config, masks=8)
    assert not decoder.continuous
    canvas = build_canvas([_encode(tiny_tokenizer, text) for text in PROMPTS[:2]], 8, ids, torch.device("cpu"))
    decoder.add(canvas, [1, 2])
    with pytest.raises(DiffutronError, match="takes no new rows"):
        decoder.add(canvas[:1], [3])
    with pytest.raises(DiffutronError, match="only be dropped"):
        decoder.remove([0])
    blocks = []
    while decoder.step(lambda event: blocks.append(event.blocks)):
        pass
    assert all(len(set(at_call)) == 1 for at_call in blocks) and blocks[-1] == (1, 1)


def test_a_row_must_have_the_decoders_number_of_masks(tiny_model, tiny_tokenizer):
    ids = SpecialIds.from_tokenizer(tiny_tokenizer)
    decoder = Decoder(tiny_model, tiny_tokenizer, GenerationConfig(max_new_tokens=4, steps=4), masks=4)
    with pytest.raises(DiffutronError, match="every row must have 4 masks"):
        decoder.add(build_canvas([_encode(tiny_tokenizer, "Ankara")], 5, ids, torch.device("cpu")), [1])
