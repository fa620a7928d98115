"""`Diffutron.compile`: the sampler's encoder pass runs compiled, with the eager model's numbers up to rounding."""

from __future__ import annotations

import pytest
import torch

from diffutron import GenerationConfig, sample
from diffutron.errors import DiffutronError
from diffutron.lm import Diffutron
from diffutron.model.parts import COMPILED_ENCODER, MaskedLMParts
from helpers.tiny import build_model

PROMPTS = ["Kitap okumak ne demek?", "Bugün", "Çay Türk kültüründe ne anlama gelir?"]
QUESTIONS = [f"«{word}» ne demek?" for word in ("kitap", "ev", "çay", "güneş", "okul", "deniz")]


def test_the_sampler_runs_the_compiled_encoder_with_the_eager_numbers(tiny_tokenizer):
    eager = build_model(tiny_tokenizer)
    lm = Diffutron(build_model(tiny_tokenizer), tiny_tokenizer)  # the same weights (seeded)
    lm.compile()
    assert set(lm.model.state_dict()) == set(eager.state_dict())  # the compiled twin is not a submodule
    prompts = [lm.encode(text) for text in PROMPTS]
    width = max(map(len, prompts))
    canvas = torch.tensor([prompt + [tiny_tokenizer.eos_token_id] * (width - len(prompt)) for prompt in prompts])
    with torch.no_grad():
        for ids, mask in (
            (canvas[:1, : len(prompts[0])], None),
            (canvas, (canvas != tiny_tokenizer.eos_token_id).long()),
        ):
            compiled, plain = MaskedLMParts(lm.model).hidden(ids, mask), MaskedLMParts(eager).hidden(ids, mask)
            real = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
            assert torch.allclose(compiled[real], plain[real], atol=1e-5)
    twin = getattr(lm.model, COMPILED_ENCODER)
    assert isinstance(twin, torch._dynamo.eval_frame.OptimizedModule)
    calls = []
    object.__setattr__(lm.model, COMPILED_ENCODER, lambda **inputs: calls.append(1) or twin(**inputs))
    sample(lm.model, tiny_tokenizer, prompts, GenerationConfig(max_new_tokens=8, steps=8, temperature=0.0))
    assert len(calls) == 8  # every call of the sampler ran the compiled twin


def test_compiled_answers_of_the_embedded_model_are_the_eager_ones():
    lm = Diffutron.from_pretrained(None, device="cpu", dtype="float32")
    config = GenerationConfig(max_new_tokens=32, steps=32, temperature=0.0)
    expected = [lm.generate(QUESTIONS, config), [lm.chat(question, config) for question in QUESTIONS[:2]]]
    lm.compile()
    assert [lm.generate(QUESTIONS, config), [lm.chat(question, config) for question in QUESTIONS[:2]]] == expected


def test_compile_refuses_a_model_without_a_known_encoder(tiny_tokenizer):
    class Opaque(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None):
            raise AssertionError("not called")

    with pytest.raises(DiffutronError, match="compiling works with ModernBERT-like masked LMs, not a Opaque"):
        Diffutron(Opaque(), tiny_tokenizer).compile()
