"""The Python API: loading, chat / generate / infill, settings and bad input."""

from __future__ import annotations

import shutil

import pytest

from diffutron import Diffutron, DiffutronError, GenerationConfig
from diffutron.model import loading
from diffutron.model.chat import render_chat
from helpers.answers import reference_answers

GREEDY = GenerationConfig(max_new_tokens=8, steps=8, block_length=4, temperature=0.0)


@pytest.fixture(scope="module")
def lm(tiny_checkpoint):
    return Diffutron.from_pretrained(tiny_checkpoint)


def test_loads_a_local_checkpoint(lm, tiny_checkpoint):
    info = lm.info()
    assert info["architecture"] == "ModernBertForMaskedLM"
    assert info["context_length"] == 512
    assert info["vocabulary"] == len(lm.tokenizer)
    assert info["special_tokens"]["mask"] == ("<mask>", lm.tokenizer.mask_token_id)
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert info["parameters"] == sum(p.numel() for p in lm.model.parameters())


def test_chat_generate_and_batches(lm):
    question = "Kitap ne demek?"
    answer = lm.chat(question, GREEDY)
    assert answer and answer == reference_answers(lm.model, lm.tokenizer, [lm.encode(render_chat(question))], GREEDY)[0]
    assert lm.chat([{"role": "user", "content": question}], GREEDY) == answer
    questions = [question, "Bugün hava çok güzel, parka gidelim mi?", "Çay?"]
    prompts = [lm.encode(render_chat(q)) for q in questions]
    assert lm.generate(questions, GREEDY) == reference_answers(lm.model, lm.tokenizer, prompts, GREEDY)
    continued = lm.generate(["Kitap okumak"], GREEDY, chat=False)[0]
    assert continued == reference_answers(lm.model, lm.tokenizer, [lm.encode("Kitap okumak")], GREEDY)[0]


def test_seed_makes_sampling_reproducible_and_matters(lm):
    config = GREEDY.replace(temperature=1.0, seed=7)
    assert lm.chat("Çay?", config) == lm.chat("Çay?", config)
    assert len({lm.chat("Çay?", config.replace(seed=seed)) for seed in range(4)}) > 1


def test_context_overflow_names_both_numbers_or_truncates(lm):
    long_prompt = "Kitap okumak güzel. " * 150 + "Ankara çay bugün hava güzel mi?"
    with pytest.raises(DiffutronError, match=r"max_new_tokens=8 .* context of 512"):
        lm.generate([long_prompt], GREEDY, chat=False)
    events = []
    answer = lm.generate([long_prompt], GREEDY.replace(truncate="left"), chat=False, callback=events.append)[0]
    kept = lm.encode(long_prompt)[-(lm.context_length - GREEDY.max_new_tokens) :]  # the end of the prompt
    assert events[0].canvas[0, : len(kept)].tolist() == kept
    assert answer == reference_answers(lm.model, lm.tokenizer, [kept], GREEDY)[0]


@pytest.mark.parametrize(
    ("prompts", "complaint"),
    [([""], "empty"), (["   "], "empty"), ("a string", "list of prompts"), ([], "no prompts")],
)
def test_bad_prompts(lm, prompts, complaint):
    with pytest.raises(DiffutronError, match=complaint):
        lm.generate(prompts, GREEDY, chat=False)


def test_prompt_with_mask_token_points_to_infill(lm):
    with pytest.raises(DiffutronError, match="infill"):
        lm.generate(["Kitap <mask> güzel"], GREEDY, chat=False)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"block_length": -1}, "block_length"),
        ({"temperature": -0.1}, "temperature"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"cfg_scale": -1}, "cfg_scale"),
        ({"remasking": "best"}, "low_confidence, random"),
        ({"penalty_scope": "all"}, "canvas, generated"),
        ({"truncate": "right"}, "unknown truncate 'right'; choose one of: error, left"),
    ],
)
def test_bad_settings(change, complaint):
    with pytest.raises(DiffutronError, match=complaint):
        GenerationConfig(**change)


def test_no_embedded_model_means_a_clear_error(monkeypatch):
    monkeypatch.setattr(loading, "default_model_path", lambda: None)
    with pytest.raises(DiffutronError, match="pass one with --model"):
        Diffutron.from_pretrained()


def test_missing_directory(tmp_path):
    with pytest.raises(DiffutronError, match="does not exist"):
        Diffutron.from_pretrained(tmp_path / "nope")


def test_directory_without_safetensors(tmp_path, tiny_checkpoint):
    target = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, target)
    for weights in target.glob("*.safetensors"):
        weights.rename(weights.with_name("pytorch_model.bin"))
    with pytest.raises(DiffutronError, match=r"missing safetensors weights \(found: pytorch_model.bin"):
        Diffutron.from_pretrained(target)


def test_tokenizer_without_mask_token(tmp_path, tiny_checkpoint):
    target = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, target)
    config = target / "tokenizer_config.json"
    config.write_text(config.read_text().replace('"mask_token": "<mask>"', '"mask_token": null'))
    with pytest.raises(DiffutronError, match="no mask token"):
        Diffutron.from_pretrained(target)


def test_unreachable_hub_id_says_how_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DiffutronError, match="huggingface-cli download"):
        Diffutron.from_pretrained("diffutron-test/not-cached-anywhere")
