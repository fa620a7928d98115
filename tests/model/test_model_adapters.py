"""LoRA adapters by name in the Python API: each answers as its merged model, none leaks into another."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from diffutron import Diffutron, DiffutronError
from diffutron.model.adapters import AdapterMismatch, parse_lora_option
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.presets import speed_config
from helpers.tiny import build_model, build_tokenizer, context_sensitive_model, save_checkpoint

GREEDY = GenerationConfig(max_new_tokens=8, steps=8, block_length=8, temperature=0.0)
QUESTION = "Türkiye'nin başkenti neresidir?"
TEXTS = ["Kitap okumak insanın ufkunu genişletir.", "Çay"]


def write_adapter(directory, base, seed: int):
    """A LoRA adapter of `base` with large random weights (a strong change), saved as peft saves one."""
    model = build_model(build_tokenizer())
    model.load_state_dict(base.state_dict())
    torch.manual_seed(seed)  # after build_model, which seeds its own initialisation
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["Wqkv", "Wo", "Wi"], init_lora_weights=False)
    adapted = get_peft_model(model, config)
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.mul_(30)
    adapted.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A base whose answers follow its hidden states (not its output bias), so that adapters change them."""
    directory = tmp_path_factory.mktemp("base")
    tokenizer = build_tokenizer()
    context_sensitive_model(tokenizer).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def adapter_dirs(tmp_path_factory, checkpoint):
    base = Diffutron.from_pretrained(checkpoint, device="cpu", dtype="float32").model
    root = tmp_path_factory.mktemp("adapters")
    return {name: write_adapter(root / name, base, seed) for name, seed in (("first", 1), ("second", 2))}


@pytest.fixture(scope="module")
def lm(checkpoint, adapter_dirs):
    return Diffutron.from_pretrained(checkpoint, device="cpu", dtype="float32", adapters=adapter_dirs)


def merged(checkpoint, adapter_dir) -> Diffutron:
    """The base with the adapter merged into its weights by peft."""
    plain = Diffutron.from_pretrained(checkpoint, device="cpu", dtype="float32")
    plain.model = PeftModel.from_pretrained(plain.model, adapter_dir).merge_and_unload()
    return plain


def test_each_adapter_answers_as_its_merged_model(lm, checkpoint, adapter_dirs):
    answers = {}
    for name, directory in adapter_dirs.items():
        with lm.adapter(name):
            answers[name] = lm.chat(QUESTION, GREEDY), lm.embed(TEXTS)
        alone = merged(checkpoint, directory)
        assert answers[name][0] == alone.chat(QUESTION, GREEDY)
        torch.testing.assert_close(answers[name][1], alone.embed(TEXTS), atol=1e-5, rtol=1e-5)
    assert answers["first"][0] != answers["second"][0]
    assert not torch.allclose(answers["first"][1], answers["second"][1], atol=1e-3)


def test_an_adapter_answers_as_its_merged_model_with_the_block_cache(lm, checkpoint, adapter_dirs):
    """The fast preset's dual cache runs the encoder's layers in pieces: the adapter is in them too."""
    cached = speed_config("fast", max_new_tokens=16, block_length=8, temperature=0.0)
    with lm.adapter("second"):
        answer = lm.generate([QUESTION, "Çay"], cached)
    assert answer == merged(checkpoint, adapter_dirs["second"]).generate([QUESTION, "Çay"], cached)


def test_without_an_adapter_the_base_model_answers(lm, checkpoint, adapter_dirs):
    plain = Diffutron.from_pretrained(checkpoint, device="cpu", dtype="float32")
    loaded = Diffutron.from_pretrained(checkpoint, device="cpu", dtype="float32", adapters=adapter_dirs)
    assert loaded.chat(QUESTION, GREEDY) == plain.chat(QUESTION, GREEDY)  # loaded, but off
    with lm.adapter("first"):
        pass
    assert lm.chat(QUESTION, GREEDY) == plain.chat(QUESTION, GREEDY)  # no adapter is left on after its block
    with lm.adapter(None):
        torch.testing.assert_close(lm.embed(TEXTS), plain.embed(TEXTS), atol=1e-6, rtol=1e-6)
    assert lm.adapters.names == ("first", "second")


def test_an_unknown_or_taken_adapter_name_is_refused(lm, adapter_dirs):
    with pytest.raises(DiffutronError, match=r"no adapter named 'third' is loaded \(loaded: first, second\)"):
        with lm.adapter("third"):
            pass
    with pytest.raises(DiffutronError, match="an adapter named 'first' is loaded already"):
        lm.load_adapter("first", adapter_dirs["second"])
    with pytest.raises(DiffutronError, match="adapter name ' x' must start with a letter or digit"):
        lm.load_adapter(" x", adapter_dirs["second"])


def test_an_adapter_of_another_base_is_refused(tmp_path, adapter_dirs):
    other = Diffutron.from_pretrained(save_checkpoint(tmp_path / "wide", hidden_size=48), device="cpu")
    with pytest.raises(AdapterMismatch, match=r"the adapter .*first does not fit the base model .*wide \(size mis"):
        other.load_adapter("first", adapter_dirs["first"])


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (2, r"fit the base model .*: 8 adapter tensor\(s\) have no layer in the base \(e\.g\. .*layers\.2\."),
        (4, r"fit the base model .*: 8 adapted layer\(s\) of the base lack adapter tensors \(e\.g\. .*layers\.3\."),
    ],
    ids=["fewer layers", "more layers"],
)
def test_an_adapter_of_a_base_with_other_layers_is_refused(tmp_path, adapter_dirs, layers, message):
    other = Diffutron.from_pretrained(save_checkpoint(tmp_path / "other", layers=layers), device="cpu")
    with pytest.raises(AdapterMismatch, match=message):
        other.load_adapter("first", adapter_dirs["first"])


def test_an_adapter_without_safetensors_weights_is_refused(tmp_path, checkpoint, adapter_dirs):
    copy = shutil.copytree(adapter_dirs["first"], tmp_path / "copy")
    (copy / "adapter_model.safetensors").rename(copy / "adapter_model.bin")
    plain = Diffutron.from_pretrained(checkpoint, device="cpu")
    with pytest.raises(DiffutronError, match="holds adapter_config.json but no adapter_model.safetensors"):
        plain.load_adapter("copy", copy)
    with pytest.raises(DiffutronError, match="is not a LoRA adapter directory"):
        plain.load_adapter("base", checkpoint)


def test_an_adapter_trained_with_another_tokenizer_is_refused(tmp_path, checkpoint, adapter_dirs):
    copy = shutil.copytree(adapter_dirs["first"], tmp_path / "copy")
    build_tokenizer(vocab_size=280).save_pretrained(copy)
    plain = Diffutron.from_pretrained(checkpoint, device="cpu")
    with pytest.raises(DiffutronError, match="was trained with another tokenizer than this model's"):
        plain.load_adapter("copy", copy)


def test_an_int8_model_takes_no_adapter(checkpoint, adapter_dirs):
    quantized = Diffutron.from_pretrained(checkpoint, device="cpu", dtype="int8")
    with pytest.raises(DiffutronError, match="LoRA adapters need an unquantized model"):
        quantized.load_adapter("first", adapter_dirs["first"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [("first", "--lora takes NAME=PATH"), ("=path", "--lora takes NAME=PATH"), ("a b=path", "adapter name 'a b'")],
)
def test_the_lora_option_is_name_equals_path(spec, message):
    with pytest.raises(DiffutronError, match=message):
        parse_lora_option(spec)
    assert parse_lora_option("legal=runs/legal/adapter") == ("legal", Path("runs/legal/adapter"))
    assert parse_lora_option("legal=~/adapter") == ("legal", Path.home() / "adapter")
