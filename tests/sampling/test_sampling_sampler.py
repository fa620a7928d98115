"""The sampler's interface: what it leaves alone and what it accepts."""

from __future__ import annotations

import pytest
import torch

from diffutron import GenerationConfig, sample
from diffutron.model.parts import MaskedLMParts
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


@pytest.mark.parametrize("threads", [1, 2])
def test_logits_are_those_of_a_full_canvas_pass_bitwise(tiny_model, tiny_tokenizer, monkeypatch, threads):
    """Every logit the sampler computes equals the full pass over its canvas, to the bit, on canvases
    below and above MIN_GEMM_ROWS positions (the padded selected rows, or the full pass itself)."""
    passes = []
    hidden, logits = MaskedLMParts.hidden, MaskedLMParts.logits

    def record_hidden(self, input_ids, attention_mask):
        passes.append({"hidden": hidden(self, input_ids, attention_mask), "rows": []})
        return passes[-1]["hidden"]

    def record_logits(self, states, *, pad=True):
        result = logits(self, states, pad=pad)
        passes[-1]["rows"].append((states, result.clone()))  # the sampler penalizes the logits in place
        return result

    monkeypatch.setattr(MaskedLMParts, "hidden", record_hidden)
    monkeypatch.setattr(MaskedLMParts, "logits", record_logits)
    sizes = (1, 2, 3, 5, 8, 10, 13, 17, 30)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for new_tokens in sizes:
            config = GenerationConfig(max_new_tokens=new_tokens, steps=3, block_length=new_tokens, temperature=0.0)
            sample(tiny_model, tiny_tokenizer, [[20, 21]], config)
        checked = 0
        with torch.no_grad():
            for step in passes:
                full = logits(MaskedLMParts(tiny_model), step["hidden"], pad=False).flatten(0, 1)
                states = step["hidden"].flatten(0, 1)
                for selected, result in step["rows"]:
                    pairs = zip(selected.reshape(-1, states.shape[-1]), result.reshape(-1, full.shape[-1]))
                    for state, row in pairs:
                        position = int((states == state).all(dim=1).nonzero()[0])
                        assert torch.equal(row, full[position])
                        checked += 1
    finally:
        torch.set_num_threads(previous)
    assert checked >= sum(sizes)
