"""CPU precision modes (bf16, dynamic int8) and the --speed presets, through the API and the CLI."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from diffutron import Diffutron, DiffutronError, GenerationConfig, sample
from diffutron.cli import app
from diffutron.model import precision
from diffutron.model.loading import load_checkpoint
from diffutron.sampling.presets import PRESETS, speed_config, speed_dtype
from helpers.prompts import encode_prompts

TEXTS = ["Kitap okumak", "Ankara çay bugün hava güzel mi? Kitap okumak insanın ufkunu", "Çay?"]
GREEDY = GenerationConfig(max_new_tokens=12, steps=12, block_length=4, temperature=0.0, early_stop=False)


@pytest.fixture(scope="module")
def quantized(tiny_model):
    return precision.quantize_int8(copy.deepcopy(tiny_model))


def test_int8_replaces_every_linear_layer_output_layer_included(tiny_model, quantized):
    assert not any(type(module) is nn.Linear for module in quantized.modules())
    assert precision.is_quantized(quantized) and not precision.is_quantized(tiny_model)
    assert isinstance(quantized.decoder, torch.ao.nn.quantized.dynamic.Linear)
    assert type(tiny_model.decoder) is nn.Linear  # the original is left alone
    ids = torch.randint(5, tiny_model.config.vocab_size, (2, 30), generator=torch.Generator().manual_seed(0))
    exact, approximate = tiny_model(input_ids=ids).logits, quantized(input_ids=ids).logits
    assert (exact.argmax(-1) == approximate.argmax(-1)).float().mean() >= 0.95
    assert (approximate - exact).norm() / exact.norm() < 0.05


def test_int8_needs_float32_weights_on_the_cpu(tiny_model):
    with pytest.raises(DiffutronError, match="starts from float32"):
        precision.quantize_int8(copy.deepcopy(tiny_model).to(torch.bfloat16))


@pytest.mark.parametrize("kind", ["bfloat16", "int8"])
@pytest.mark.parametrize("change", [{}, {"threshold": 0.02, "cache": "dual"}], ids=["schedule", "fast"])
def test_low_precision_batches_are_complete_and_match_single_prompts_closely(
    tiny_model, quantized, tiny_tokenizer, kind, change
):
    """Lower precision rounds differently with the batch's shape (bf16 GEMM blocking) or content
    (fbgemm quantizes a Linear layer's input with one scale for the whole batch), so a row may
    differ from its single run where the random tiny model has near-ties (int8: 78% agreement
    with the count schedule here); the layout must be exact."""
    model = quantized if kind == "int8" else copy.deepcopy(tiny_model).to(torch.bfloat16)
    prompts = encode_prompts(tiny_tokenizer, TEXTS)
    config = GREEDY.replace(**change)
    batch = sample(model, tiny_tokenizer, prompts, config)
    same = total = 0
    for row, prompt in enumerate(prompts):
        alone = sample(model, tiny_tokenizer, [prompt], config)[0]
        end = len(prompt) + 12
        assert batch[row, : len(prompt)].tolist() == prompt
        assert bool((batch[row, end:] == tiny_tokenizer.eos_token_id).all())
        assert not bool((batch[row] == tiny_tokenizer.mask_token_id).any())
        same += int((batch[row, len(prompt) : end] == alone[len(prompt) : end]).sum())
        total += 12
    assert same / total >= 0.6


def test_loading_in_int8(tiny_checkpoint):
    model, _ = load_checkpoint(tiny_checkpoint, dtype="int8")
    assert precision.is_quantized(model)
    lm = Diffutron.from_pretrained(tiny_checkpoint, dtype="int8")
    assert lm.info()["dtype"] == "int8 (dynamic)"
    with pytest.raises(DiffutronError, match="int8 \\(CPU only\\)"):
        load_checkpoint(tiny_checkpoint, dtype="int4")


# --- presets -----------------------------------------------------------------------------


def test_exact_preset_changes_nothing():
    assert speed_config("exact") == GenerationConfig()
    assert speed_config("exact", temperature=0.0) == GenerationConfig(temperature=0.0)
    assert speed_dtype("exact", "cpu") == "auto"


@pytest.mark.parametrize("speed", ["fast", "fastest"])
def test_fast_presets_combine_parallel_decoding_cache_and_cpu_precision(speed, monkeypatch):
    preset = PRESETS[speed]
    config = speed_config(speed)
    assert config.cache == preset.sampler["cache"] != "none"
    assert (config.threshold, config.factor) == (preset.sampler.get("threshold"), preset.sampler.get("factor"))
    assert config.replace(**{k: getattr(GenerationConfig(), k) for k in preset.sampler}) == GenerationConfig()
    # explicit settings win; a parallel rule given by the user replaces the preset's
    assert speed_config(speed, cache="none").cache == "none"
    for rule, value in [("threshold", 0.8), ("factor", 2.0)]:
        chosen = speed_config(speed, **{rule: value})
        assert getattr(chosen, rule) == value
    assert speed_dtype(speed, "cuda") == "auto"
    monkeypatch.setattr(precision, "cpu_bfloat16_supported", lambda: True)
    assert speed_dtype(speed, "cpu") == preset.cpu_dtype
    monkeypatch.setattr(precision, "cpu_bfloat16_supported", lambda: False)
    assert speed_dtype(speed, "cpu") == ("float32" if preset.cpu_dtype == "bfloat16" else preset.cpu_dtype)


def test_unknown_speed():
    with pytest.raises(DiffutronError, match="unknown speed 'turbo'; choose one of: exact, fast, fastest"):
        speed_config("turbo")


def test_from_pretrained_with_a_speed(tiny_checkpoint):
    lm = Diffutron.from_pretrained(tiny_checkpoint, speed="fastest")
    assert lm.config == speed_config("fastest")
    assert precision.is_quantized(lm.model)
    answer = lm.chat("Kitap ne demek?", lm.config.replace(max_new_tokens=8, block_length=4))
    assert isinstance(answer, str) and "<mask>" not in answer


# --- CLI ---------------------------------------------------------------------------------

SHORT = ["--max-new-tokens", "6", "--steps", "6", "--block-length", "3", "--temperature", "0"]


@pytest.fixture(scope="module")
def run(tiny_checkpoint):
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [*args, "--model", str(tiny_checkpoint)])


def test_cli_speed_presets_and_fast_options(run, tmp_path, tiny_checkpoint):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"prompt": "Kitap ne demek?"}\n{"prompt": "Çay?"}\n', encoding="utf-8")
    result = run(
        "generate", "--input", str(source), "--output", str(target), "--speed", "fastest", "--threshold", "0.3", *SHORT
    )
    assert result.exit_code == 0, result.output
    settings = json.loads(target.read_text(encoding="utf-8").splitlines()[0])["settings"]
    assert settings["threshold"] == 0.3 and settings["factor"] is None
    assert settings["cache"] == PRESETS["fastest"].sampler["cache"]
    result = run("generate", "Kitap ne demek?", "--speed", "exact", "--cache", "prefix", "--refresh-every", "2", *SHORT)
    assert result.exit_code == 0, result.output
    config = GenerationConfig(
        max_new_tokens=6, steps=6, block_length=3, temperature=0.0, cache="prefix", refresh_every=2
    )
    assert result.output.split() == Diffutron.from_pretrained(tiny_checkpoint).chat("Kitap ne demek?", config).split()
    result = run("info", "--dtype", "int8")
    assert result.exit_code == 0 and "int8 (dynamic)" in result.output


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--threshold", "0"], "threshold must be in (0, 1]"),
        (["--threshold", "1.01"], "threshold must be in (0, 1]"),
        (["--factor", "-1"], "factor must be > 0"),
        (["--speed", "turbo"], "'turbo' is not one of 'exact', 'fast', 'fastest'"),
        (["--cache", "everything"], "'everything' is not one of 'none', 'prefix', 'dual'"),
    ],
)
def test_cli_bad_fast_options(run, args, complaint):
    result = run("generate", "Kitap ne demek?", *args, *SHORT)
    assert result.exit_code == 2
    assert complaint in result.output and "Traceback" not in result.output
