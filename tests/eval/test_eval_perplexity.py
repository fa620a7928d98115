"""MLM perplexity (docs/reference-behaviour.md, section 6): a direct recomputation, determinism,
special tokens, errors."""

from __future__ import annotations

import math

import pytest
import torch

from diffutron.errors import DiffutronError
from diffutron.eval.perplexity import masked_sequences, mlm_perplexity, special_affixes
from helpers.tiny import TURKISH_TEXT, build_tokenizer

DOCUMENTS = [paragraph for paragraph in TURKISH_TEXT.split("\n\n") if paragraph.strip()] * 2


def test_matches_a_direct_computation(tiny_model, bos_eos_tokenizer):
    tokenizer = bos_eos_tokenizer
    result = mlm_perplexity(tiny_model, tokenizer, DOCUMENTS, max_length=24, seed=5, batch_size=3)
    sequences = masked_sequences(tokenizer, DOCUMENTS, 0.15, 24, 5, "mask")
    losses = []
    with torch.no_grad():
        for sequence in sequences:
            assert len(sequence.original) <= 24
            assert sequence.original[0] == tokenizer.bos_token_id and sequence.original[-1] == tokenizer.eos_token_id
            assert all(0 < p < len(sequence.original) - 1 for p in sequence.masked)  # specials never masked
            assert all(sequence.corrupted[p] == tokenizer.mask_token_id for p in sequence.masked)
            if sequence.masked:
                logits = tiny_model(input_ids=torch.tensor([sequence.corrupted])).logits[0].float()
                logprobs = logits.log_softmax(-1)
                losses += [-float(logprobs[p, sequence.original[p]]) for p in sequence.masked]
    assert result.tokens == len(losses)
    assert result.cross_entropy == pytest.approx(sum(losses) / len(losses), abs=1e-5)
    assert result.perplexity == pytest.approx(math.exp(result.cross_entropy))
    total = sum(len(s.original) - 2 for s in sequences)
    assert 0.08 < result.tokens / total < 0.25  # about 15% of the text tokens
    low, high = result.interval
    assert low < result.perplexity < high


def test_deterministic_for_a_seed_whatever_the_batch_size(tiny_model, tiny_tokenizer):
    first = mlm_perplexity(tiny_model, tiny_tokenizer, DOCUMENTS, max_length=32, seed=1, batch_size=2)
    again = mlm_perplexity(tiny_model, tiny_tokenizer, DOCUMENTS, max_length=32, seed=1, batch_size=7)
    other = mlm_perplexity(tiny_model, tiny_tokenizer, DOCUMENTS, max_length=32, seed=2, batch_size=2)
    assert again.tokens == first.tokens
    assert again.perplexity == pytest.approx(first.perplexity, rel=1e-6)
    assert again.interval == pytest.approx(first.interval, rel=1e-6)
    assert other.perplexity != pytest.approx(first.perplexity, rel=1e-6)
    bert = mlm_perplexity(tiny_model, tiny_tokenizer, DOCUMENTS, max_length=32, seed=1, corruption="bert")
    assert bert.tokens == first.tokens and bert.perplexity != pytest.approx(first.perplexity, rel=1e-6)


def test_special_affixes():
    assert special_affixes(build_tokenizer()) == ([], [])


def test_bad_input(tiny_model, tiny_tokenizer):
    with pytest.raises(DiffutronError, match="no documents"):
        mlm_perplexity(tiny_model, tiny_tokenizer, [])
    with pytest.raises(DiffutronError, match="nothing was masked"):
        mlm_perplexity(tiny_model, tiny_tokenizer, ["Çay"], mlm_probability=0.01)
    with pytest.raises(DiffutronError, match="mlm_probability"):
        mlm_perplexity(tiny_model, tiny_tokenizer, DOCUMENTS, mlm_probability=1.5)
    with pytest.raises(DiffutronError, match="corruption"):
        mlm_perplexity(tiny_model, tiny_tokenizer, DOCUMENTS, corruption="random")


def test_max_length_defaults_to_the_models_context(tiny_tokenizer):
    from helpers.tiny import build_model

    model = build_model(tiny_tokenizer, max_positions=16)
    long_documents = [" ".join(DOCUMENTS)]
    result = mlm_perplexity(model, tiny_tokenizer, long_documents, seed=3)
    assert result.settings["max_length"] == 16
    assert result.sequences > 1  # the text was cut into pieces of the context, not of 512
    assert result.to_dict() == mlm_perplexity(model, tiny_tokenizer, long_documents, seed=3, max_length=16).to_dict()
    with pytest.raises(DiffutronError, match="max_length 512 exceeds the model's context of 16"):
        mlm_perplexity(model, tiny_tokenizer, long_documents, max_length=512)
