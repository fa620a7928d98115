"""Recipes, overrides, dry-run parameter counts and LoRA targets (no weights, no data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffutron.cli import app
from diffutron.errors import DiffutronError
from diffutron.training.config import load_training_recipe
from diffutron.training.models import apply_lora, scratch_config
from diffutron.training.run import resolve_optimizer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# jhu-clsp/mmBERT-base's configuration as published (written here; nothing is downloaded)
MMBERT_BASE = {
    "architectures": ["ModernBertForMaskedLM"],
    "model_type": "modernbert",
    "vocab_size": 256000,
    "hidden_size": 768,
    "num_hidden_layers": 22,
    "intermediate_size": 1152,
    "num_attention_heads": 12,
    "global_attn_every_n_layers": 3,
    "local_attention": 128,
    "max_position_embeddings": 8192,
    "hidden_activation": "gelu",
    "pad_token_id": 0,
    "eos_token_id": 1,
    "bos_token_id": 2,
    "cls_token_id": 1,
    "sep_token_id": 1,
    "tie_word_embeddings": True,
}


@pytest.mark.parametrize(
    "name",
    [
        "paper/cpt-mmbert",
        "paper/sft-stage1",
        "paper/sft-stage2",
        "tiny-cpu",
        "embedded/pretrain",
        "embedded/sft1",
        "embedded/sft2",
    ],
)
def test_shipped_recipes_load(name):
    recipe = load_training_recipe(CONFIGS / f"{name}.yaml")
    assert recipe.task == ("sft" if name.split("/")[-1].startswith("sft") else "pretrain")


def test_paper_cpt_recipe():
    recipe = load_training_recipe(CONFIGS / "paper" / "cpt-mmbert.yaml")
    assert (recipe.lora.r, recipe.lora.alpha, recipe.lora.dropout) == (256, 256, 0.1)
    assert recipe.lora.target_modules == ["Wqkv", "Wo", "Wi"]
    assert recipe.optimizer.name == "paged_adamw_8bit" and recipe.optimizer.lr == 5e-5
    assert (recipe.training.batch_size, recipe.training.gradient_accumulation) == (64, 2)
    assert (recipe.training.epochs, recipe.training.max_length) == (4, 512)


def test_dry_run_reproduces_the_paper_figure(tmp_path):
    base = tmp_path / "mmbert-base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps(MMBERT_BASE), encoding="utf-8")
    result = CliRunner().invoke(
        app, ["train", str(CONFIGS / "paper" / "cpt-mmbert.yaml"), "--set", f"model.name_or_path={base}", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "trainable parameters: 54,067,200 of 361,853,440 (14.94%)" in result.output


def test_overrides_are_typed(tmp_path):
    recipe = load_training_recipe(
        CONFIGS / "paper" / "cpt-mmbert.yaml",
        ["optimizer.lr=1e-4", "training.max_steps=20", "lora.target_modules=[Wqkv]", "logging.tensorboard=false"],
    )
    assert recipe.optimizer.lr == 1e-4 and isinstance(recipe.optimizer.lr, float)
    assert recipe.training.max_steps == 20
    assert recipe.lora.target_modules == ["Wqkv"]
    assert recipe.logging.tensorboard is False


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(DiffutronError, match=r"unknown key 'rank'; valid keys: r, alpha, dropout, target_modules"):
        load_training_recipe(CONFIGS / "paper" / "cpt-mmbert.yaml", ["lora.rank=8"])
    with pytest.raises(DiffutronError, match=r"unknown key 'learning_rate'.*valid keys: name, lr"):
        load_training_recipe(CONFIGS / "paper" / "cpt-mmbert.yaml", ["optimizer.learning_rate=1"])


def test_bad_values_are_reported():
    with pytest.raises(DiffutronError, match="optimizer.lr: expected a number"):
        load_training_recipe(CONFIGS / "paper" / "cpt-mmbert.yaml", ["optimizer.lr=fast"])
    with pytest.raises(DiffutronError, match="objective.*schedule"):
        load_training_recipe(CONFIGS / "paper" / "cpt-mmbert.yaml", ["objective.schedule=quadratic"])
    with pytest.raises(DiffutronError, match="exactly one of model.name_or_path and model.from_scratch"):
        load_training_recipe(CONFIGS / "tiny-cpu.yaml", ["model.name_or_path=x"])


def test_cli_reports_a_bad_key_in_one_line():
    result = CliRunner().invoke(
        app, ["train", str(CONFIGS / "tiny-cpu.yaml"), "--set", "trainng.epochs=1", "--dry-run"]
    )
    assert result.exit_code == 2
    assert "unknown key 'trainng'" in " ".join(result.output.split()) and "Traceback" not in result.output


def test_lora_target_matching_nothing_lists_linear_modules(tiny_model):
    from diffutron.training.config import LoraSettings

    with pytest.raises(DiffutronError, match=r"'q_proj' matches no linear module; linear modules found: Wi, Wo, Wqkv"):
        apply_lora(tiny_model, LoraSettings(r=2, target_modules=["Wqkv", "q_proj"]))
    with pytest.raises(DiffutronError, match="MLM head"):
        apply_lora(tiny_model, LoraSettings(r=2, target_modules=["decoder"]))


def test_lora_leaves_the_head_alone(tiny_tokenizer):
    from diffutron.training.config import LoraSettings
    from helpers.tiny import build_model

    model = apply_lora(build_model(tiny_tokenizer), LoraSettings(r=2))
    adapted = {name for name, _ in model.named_modules() if name.endswith("lora_A")}
    assert adapted and not any(".head." in name or "decoder" in name for name in adapted)
    assert {name.split(".")[-2] for name in adapted} == {"Wqkv", "Wo", "Wi"}
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


def test_from_scratch_config_checks_fields(tiny_tokenizer):
    config = scratch_config({"hidden_size": 32, "num_attention_heads": 2}, tiny_tokenizer)
    assert config.vocab_size == len(tiny_tokenizer) and config.pad_token_id == tiny_tokenizer.pad_token_id
    with pytest.raises(DiffutronError, match="unknown ModernBertConfig field.*hidden_dim"):
        scratch_config({"hidden_dim": 32}, tiny_tokenizer)
    with pytest.raises(DiffutronError, match="taken from the tokenizer"):
        scratch_config({"vocab_size": 5}, tiny_tokenizer)


def test_paged_adamw_falls_back_off_cuda(caplog, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert resolve_optimizer("paged_adamw_8bit") == "adamw_torch"
    assert "falling back to adamw_torch" in caplog.text


def test_bf16_on_cpu_uses_cpu_autocast(monkeypatch, tmp_path):
    from diffutron.training.run import training_arguments

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    recipe = load_training_recipe(CONFIGS / "tiny-cpu.yaml", [f"output_dir={tmp_path}", "training.precision=bf16"])
    arguments = training_arguments(recipe, has_eval=False)
    assert arguments.bf16 and arguments.use_cpu and arguments.optim == "adamw_torch"
