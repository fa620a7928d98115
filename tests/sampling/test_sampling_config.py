"""Generation settings: the defaults are the model card's (docs/reference-behaviour.md, section 3)."""

from __future__ import annotations

import torch

from diffutron import GenerationConfig, sample


def test_defaults_are_the_model_card_settings():
    config = GenerationConfig()
    assert (config.max_new_tokens, config.steps, config.block_length) == (64, 64, 32)
    assert (config.temperature, config.repetition_penalty, config.cfg_scale) == (0.1, 1.2, 0.0)
    assert config.remasking == "low_confidence" and config.stochastic_transfer is False
    assert config.penalty_scope == "canvas" and config.early_stop is True and config.seed is None
    assert config.truncate == "error"
    assert (config.threshold, config.factor, config.cache, config.refresh_every) == (None, None, "none", None)


def test_sample_without_a_config_uses_the_model_card_settings(tiny_model, tiny_tokenizer):
    prompt = tiny_tokenizer("Kitap okumak", add_special_tokens=False)["input_ids"]
    torch.manual_seed(0)  # no seed in the defaults: the global generator draws
    canvas = sample(tiny_model, tiny_tokenizer, [prompt])
    assert canvas.shape[1] == len(prompt) + GenerationConfig().max_new_tokens
    torch.manual_seed(0)
    assert torch.equal(canvas, sample(tiny_model, tiny_tokenizer, [prompt], GenerationConfig()))
