"""The confidence a StepEvent reports: the model's probability of each token committed at that call."""

from __future__ import annotations

import pytest
import torch

from diffutron import GenerationConfig, sample
from helpers.prompts import encode_prompts

PROMPTS = ["Kitap okumak", "Çay?"]
BASE = GenerationConfig(
    max_new_tokens=12, steps=12, block_length=6, temperature=0.0, repetition_penalty=1.0, early_stop=False
)


class Recorder:
    """Keeps, for every call, the canvas the model saw and what the event reported."""

    def __init__(self, canvas: torch.Tensor):
        self.before = canvas.clone()
        self.steps = []

    def __call__(self, event):
        self.steps.append((self.before, event.committed.clone(), event.confidence.clone(), event.canvas.clone()))
        self.before = event.canvas.clone()


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
def test_confidence_is_the_probability_of_the_committed_token(tiny_model, tiny_tokenizer, remasking):
    from diffutron.model.tokens import SpecialIds
    from diffutron.sampling.sampler import build_canvas

    prompts = encode_prompts(tiny_tokenizer, PROMPTS)
    config = BASE.replace(remasking=remasking, seed=0)
    recorder = Recorder(
        build_canvas(prompts, config.max_new_tokens, SpecialIds.from_tokenizer(tiny_tokenizer), torch.device("cpu"))
    )
    sample(tiny_model, tiny_tokenizer, prompts, config, callback=recorder)
    assert len(recorder.steps) == config.steps
    for before, committed, confidence, after in recorder.steps:
        assert confidence.dtype == torch.float32 and confidence.shape == committed.shape
        assert torch.equal(torch.isfinite(confidence), committed)  # NaN wherever nothing was committed
        attention = (before != tiny_tokenizer.eos_token_id).long()
        with torch.no_grad():
            probabilities = tiny_model(input_ids=before, attention_mask=attention).logits.softmax(dim=-1)
        rows, columns = committed.nonzero(as_tuple=True)
        expected = probabilities[rows, columns, after[rows, columns]]
        torch.testing.assert_close(confidence[rows, columns], expected, rtol=1e-4, atol=1e-5)


def test_confidence_on_the_fast_path_respects_the_threshold():
    """Threshold decoding with a dual cache on the embedded model: every committed token clears the
    threshold, except the single most confident one a call must commit when none does."""
    from diffutron import Diffutron

    lm = Diffutron.from_pretrained(None)
    threshold = 0.7
    config = lm.config.replace(threshold=threshold, cache="dual", seed=0)
    events = []
    lm.chat(
        "«kitap» ne demek?",
        config,
        callback=lambda event: events.append((event.committed.clone(), event.confidence.clone())),
    )
    saw_parallel = False
    for committed, confidence in events:
        assert torch.equal(torch.isfinite(confidence), committed)
        values = confidence[committed]
        assert bool(((values > 0) & (values <= 1)).all())
        if values.numel() > 1:
            saw_parallel = True
            assert bool((values >= threshold).all())
    assert saw_parallel, "no call committed two tokens at once: the check saw nothing"
