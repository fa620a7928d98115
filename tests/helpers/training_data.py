"""Prepared training data directories and recipes, built by the training tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import yaml

from diffutron.data.prepared import write_prepared
from diffutron.model.chat import render_chat

TINY_MODEL = {
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "local_attention": 8,
    "max_position_embeddings": 128,
}
QUESTIONS = [
    ("Türkiye'nin başkenti neresidir?", "Türkiye'nin başkenti Ankara'dır."),
    ("Bugün hava nasıl?", "Bugün hava çok güzel, parka gidelim."),
    ("Çay neyin simgesidir?", "Çay misafirperverliğin simgesidir."),
]


def save_dataset(path: Path, columns: dict[str, list]) -> Path:
    """A prepared-data directory as the data builders write it (save_to_disk, atomically)."""
    return write_prepared(datasets.Dataset.from_dict(columns), path, {"written_by": "tests"}, overwrite=False)


def sft_rows(tokenizer) -> tuple[list[list[int]], list[list[int]], list[int]]:
    """(input_ids, labels, prompt lengths) of a few conversations, prompt labelled -100."""
    ids, labels, prompt_lengths = [], [], []
    for question, answer in QUESTIONS:
        prompt = tokenizer(render_chat(question), add_special_tokens=False)["input_ids"]
        full = tokenizer(
            render_chat([{"role": "user", "content": question}, {"role": "assistant", "content": answer}]),
            add_special_tokens=False,
        )["input_ids"]
        assert full[: len(prompt)] == prompt
        ids.append(full)
        labels.append([-100] * len(prompt) + full[len(prompt) :])
        prompt_lengths.append(len(prompt))
    return ids, labels, prompt_lengths


def write_recipe(path: Path, **sections: Any) -> Path:
    path.write_text(yaml.safe_dump(sections, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def pretrain_sections(run_dir: Path, tokenizer_dir: Path, data_dir: Path, **changes: Any) -> dict[str, Any]:
    """The tiny from-scratch pretraining recipe of the training tests; keyword sections update the defaults."""
    sections: dict[str, Any] = {
        "task": "pretrain",
        "output_dir": str(run_dir),
        "seed": 7,
        "tokenizer": str(tokenizer_dir),
        "model": {"from_scratch": dict(TINY_MODEL)},
        "data": {"train": str(data_dir)},
        "optimizer": {"lr": 3e-3, "warmup": 0.1, "weight_decay": 0.0},
        "training": {"batch_size": 8, "max_steps": 8, "max_length": 64, "precision": "fp32"},
        "checkpoints": {"save_steps": 4, "keep_last": 2},
        "logging": {"steps": 1, "tensorboard": False},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(sections.get(key), dict):
            sections[key] = {**sections[key], **value}
        else:
            sections[key] = value
    return sections


def train_lora(directory: Path, base: Path, tokenizer, seed: int) -> Path:
    """A LoRA SFT run of 4 steps on `base` with `diffutron train`: its run directory, which holds
    `adapter` (the adapter) and `final` (the adapter merged into the base by the run)."""
    from typer.testing import CliRunner

    from diffutron.cli import app

    ids, labels, _ = sft_rows(tokenizer)
    data = save_dataset(directory / "sft", {"input_ids": ids * 4, "labels": labels * 4})
    recipe = write_recipe(
        directory / "lora.yaml",
        task="sft",
        seed=seed,
        output_dir=str(directory / "run"),
        model={"name_or_path": str(base)},
        data={"train": str(data)},
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
        optimizer={"lr": 0.05, "warmup": 0},
        training={"batch_size": 4, "max_steps": 4, "max_length": 96, "precision": "fp32"},
        checkpoints={"save_steps": 4, "keep_last": 1},
        logging={"tensorboard": False},
    )
    result = CliRunner().invoke(app, ["train", str(recipe)])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return directory / "run"
