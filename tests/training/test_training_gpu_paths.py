"""The GPU-facing training settings, checked on the CPU: optimizers, the final LoRA merge, resuming
the masking noise on another device, attention kernels, length grouping, padding to a multiple."""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffutron.errors import DiffutronError
from diffutron.training import run as run_module
from diffutron.training.collators import PretrainCollator, SFTCollator
from diffutron.training.config import load_training_recipe
from diffutron.training.objective import noise_generator
from diffutron.training.run import (
    bitsandbytes_problem,
    build_trainer,
    resolve_optimizer,
    train,
    training_arguments,
)
from diffutron.training.trainer import NOISE_STATE
from helpers.training_data import write_recipe

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def tiny_recipe(tmp_path: Path, *overrides: str):
    return load_training_recipe(CONFIGS / "tiny-cpu.yaml", [f"output_dir={tmp_path}", *overrides])


def test_fused_adamw_is_accepted(tmp_path):
    arguments = training_arguments(tiny_recipe(tmp_path, "optimizer.name=adamw_torch_fused"), has_eval=False)
    assert arguments.optim == "adamw_torch_fused"


@pytest.mark.parametrize(
    ("variable", "name"), [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")]
)
def test_eight_bit_optimizer_is_refused_under_sharding(monkeypatch, variable, name):
    monkeypatch.setenv(variable, "true")
    with pytest.raises(DiffutronError, match=f"paged_adamw_8bit cannot be used under {name}.*adamw_torch_fused"):
        resolve_optimizer("paged_adamw_8bit")
    assert resolve_optimizer("adamw_torch_fused") == "adamw_torch_fused"


def broken_bitsandbytes() -> types.ModuleType:
    """What an install without a working CUDA build gives: it imports, its optimizers fail on use."""
    module = types.ModuleType("bitsandbytes")

    def failing(*args, **kwargs):
        raise RuntimeError("CUDA binary not found: libbitsandbytes_cuda126.so\nmore lines")

    module.optim = types.SimpleNamespace(PagedAdamW8bit=failing)
    return module


def test_bitsandbytes_missing_falls_back_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # `import bitsandbytes` fails
    with caplog.at_level(logging.WARNING):
        assert resolve_optimizer("paged_adamw_8bit") == "adamw_torch"
    assert "bitsandbytes does not work here (import failed" in caplog.text and "diffutron[gpu]" in caplog.text
    assert "falling back to adamw_torch" in caplog.text


def test_bitsandbytes_without_a_working_build_is_detected_by_a_real_step(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", broken_bitsandbytes())
    problem = bitsandbytes_problem(device="cpu")  # the probe's own device: this machine has no CUDA
    assert problem == "RuntimeError: CUDA binary not found: libbitsandbytes_cuda126.so"


def test_lora_needs_a_trained_base(tmp_path):
    with pytest.raises(DiffutronError, match="lora needs a trained base"):
        tiny_recipe(tmp_path, "lora={r: 4}")


def test_final_lora_merge_uses_the_saved_adapter_and_a_fresh_base(tmp_path, tiny_checkpoint, sft_dir, monkeypatch):
    calls = []
    real_merge = run_module.merge_lora

    def spy(adapter_dir, out_dir, **kwargs):
        calls.append((Path(adapter_dir), Path(out_dir), kwargs))
        assert (Path(adapter_dir) / "adapter_model.safetensors").is_file()  # written before the merge
        return real_merge(adapter_dir, out_dir, **kwargs)

    monkeypatch.setattr(run_module, "merge_lora", spy)
    recipe = write_recipe(
        tmp_path / "lora.yaml",
        task="sft",
        output_dir=str(tmp_path / "run"),
        model={"name_or_path": str(tiny_checkpoint)},
        data={"train": str(sft_dir)},
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
        optimizer={"lr": 0.05, "warmup": 0},
        training={"batch_size": 4, "max_steps": 2, "max_length": 96, "precision": "fp32"},
        checkpoints={"save_steps": 10, "keep_last": 1},
        logging={"tensorboard": False},
    )
    final = train(load_training_recipe(recipe))
    assert calls == [
        (tmp_path / "run" / "adapter", final, {"base": str(tiny_checkpoint), "tolerance": 1e-4, "overwrite": True})
    ]
    assert all(t.dtype == torch.float32 for t in load_file(final / "model.safetensors").values())


@pytest.fixture
def tiny_trainer(pretrain_recipe):
    return build_trainer(load_training_recipe(pretrain_recipe()))


def test_noise_state_restores_on_the_same_device(tiny_trainer, tmp_path):
    tiny_trainer._save_rng_state(str(tmp_path))
    expected = torch.rand(4, generator=tiny_trainer.noise)
    tiny_trainer._load_rng_state(str(tmp_path))
    assert torch.equal(torch.rand(4, generator=tiny_trainer.noise), expected)


def test_noise_state_of_another_device_is_reseeded_with_a_warning(tiny_trainer, tmp_path, caplog):
    tiny_trainer._save_rng_state(str(tmp_path))
    cuda_like_state = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state: seed and offset
    torch.save(cuda_like_state, tmp_path / f"{NOISE_STATE}.pth")
    tiny_trainer.state.global_step = 40
    with caplog.at_level(logging.WARNING):
        tiny_trainer._load_rng_state(str(tmp_path))
    assert "another kind of device" in caplog.text and "step 40" in caplog.text
    expected = noise_generator(tiny_trainer.args.seed, 0, step=40)
    assert torch.equal(torch.rand(8, generator=tiny_trainer.noise), torch.rand(8, generator=expected))
    fresh = noise_generator(tiny_trainer.args.seed, 0)
    assert not torch.equal(
        torch.rand(8, generator=noise_generator(tiny_trainer.args.seed, 0, step=40)), torch.rand(8, generator=fresh)
    )  # not the stream the run started with


def test_attention_implementation_is_applied_or_refused(pretrain_recipe):
    trainer = build_trainer(load_training_recipe(pretrain_recipe(), ["training.attention=eager"]))
    assert trainer.model.config._attn_implementation == "eager"
    with pytest.raises(DiffutronError, match="flash_attention_2"):
        build_trainer(load_training_recipe(pretrain_recipe(), ["training.attention=flash_attention_2"]))
    with pytest.raises(DiffutronError, match="training.attention"):
        load_training_recipe(pretrain_recipe(), ["training.attention=flex"])


def test_group_by_length_reaches_the_trainer(tmp_path):
    arguments = training_arguments(tiny_recipe(tmp_path, "training.group_by_length=true"), has_eval=False)
    assert "group_by_length" in (
        str(getattr(arguments, "train_sampling_strategy", "")),
        "group_by_length" if getattr(arguments, "group_by_length", False) else "",
    )
    plain = training_arguments(tiny_recipe(tmp_path), has_eval=False)
    assert "group_by_length" not in str(getattr(plain, "train_sampling_strategy", ""))


def test_padding_to_a_multiple_never_passes_max_length():
    rows = [{"input_ids": [5] * 70}, {"input_ids": [6] * 3}]
    assert PretrainCollator(0, max_length=512, pad_to_multiple_of=64)(rows)["input_ids"].shape == (2, 128)
    assert PretrainCollator(0, max_length=100, pad_to_multiple_of=64)(rows)["input_ids"].shape == (2, 100)
    assert PretrainCollator(0, max_length=512)(rows)["input_ids"].shape == (2, 70)
    batch = PretrainCollator(0, max_length=512, pad_to_multiple_of=64)(rows)
    assert batch["attention_mask"][0, 70:].sum() == 0 and (batch["labels"][0, 70:] == -100).all()
    sft = SFTCollator(0, max_length=512, pad_to_multiple_of=64)([{"input_ids": [5] * 70, "labels": [5] * 70}])
    assert sft["input_ids"].shape == (1, 128) and (sft["labels"][0, 70:] == 0).all()  # padding is labelled


def test_pad_multiple_must_be_positive(tmp_path):
    with pytest.raises(DiffutronError, match="pad_to_multiple_of must be >= 1"):
        tiny_recipe(tmp_path, "training.pad_to_multiple_of=0")
