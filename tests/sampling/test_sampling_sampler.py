"""The sampler's interface: what it leaves alone and what it accepts."""

from __future__ import annotations

import torch

from diffutron import GenerationConfig
from diffutron.model.tokens import SpecialIds
from diffutron.sampling.sampler import build_canvas, denoise


def test_denoise_fills_a_copy_and_leaves_the_canvas_given(tiny_model, tiny_tokenizer):
    ids = SpecialIds.from_tokenizer(tiny_tokenizer)
    canvas = build_canvas([[20, 21, 22], [23]], 4, ids, torch.device("cpu"))
    given = canvas.clone()
    config = GenerationConfig(max_new_tokens=4, steps=4, block_length=4, temperature=0.0, early_stop=False)
    filled = denoise(tiny_model, tiny_tokenizer, canvas, config)
    assert torch.equal(canvas, given)
    assert not bool((filled == ids.mask).any())
    assert torch.equal(filled[given != ids.mask], given[given != ids.mask])
