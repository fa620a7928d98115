"""End-to-end tiny CPU runs: learning, logs, final model, SIGKILL + resume, LoRA SFT and merge."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from diffutron.cli import app
from diffutron.lm import Diffutron
from diffutron.model.tokens import IGNORE_INDEX
from diffutron.sampling.config import GenerationConfig
from diffutron.training.callbacks import LOG_NAME, read_log
from diffutron.training.collators import PretrainCollator
from diffutron.training.config import load_training_recipe
from diffutron.training.models import build_model, load_tokenizer
from diffutron.training.objective import MDLMObjective
from diffutron.training.run import build_trainer, load_training_data
from helpers.training_data import TINY_MODEL, pretrain_sections, save_dataset, write_recipe

RUNNER = CliRunner()


def train(*arguments: str) -> None:
    result = RUNNER.invoke(app, ["train", *map(str, arguments)])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"


def message(result) -> str:
    """The CLI's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "final" / "model.safetensors")


def fixed_noise_loss(model, recipe, rows) -> float:
    """The MDLM loss (weights 1) of `rows` at t = 0.3, 0.6, 0.9 with fixed masks: a low-noise yardstick."""
    tokenizer = load_tokenizer(recipe.tokenizer)
    batch = PretrainCollator(tokenizer.pad_token_id, recipe.training.max_length)([{"input_ids": r} for r in rows])
    objective, generator, total = MDLMObjective(weighting="ones"), torch.Generator().manual_seed(0), 0.0
    for value in (0.3, 0.6, 0.9):
        t = torch.full((len(rows),), value)
        noisy, masked = objective.corrupt(batch["input_ids"], batch["labels"], t, tokenizer.mask_token_id, generator)
        with torch.no_grad():
            logits = model.eval()(input_ids=noisy, attention_mask=batch["attention_mask"]).logits
        total += objective.loss(logits, batch["labels"], masked, t).item()
    return total / 3


def test_tiny_run_learns_logs_and_saves_a_loadable_model(pretrain_recipe, pretrain_dir, tmp_path):
    path = pretrain_recipe(
        training={"max_steps": 60}, optimizer={"lr": 5e-3}, checkpoints={"save_steps": 20, "keep_last": 2}
    )
    train(path)
    run, recipe = tmp_path / "run", load_training_recipe(path)
    records = read_log(run / "log.jsonl")
    assert [r["step"] for r in records] == list(range(1, 61))
    assert all(r["tokens_per_second"] > 0 and r["grad_norm"] > 0 and "learning_rate" in r for r in records[1:])
    assert sum(r["loss"] for r in records[-15:]) < sum(r["loss"] for r in records[:15])

    rows = load_training_data(str(pretrain_dir), "pretrain")["input_ids"][:12]
    initial = build_model(recipe, load_tokenizer(recipe.tokenizer))  # same seed: the run's starting point
    trained = Diffutron.from_pretrained(run / "final", device="cpu", dtype="float32")
    before, after = fixed_noise_loss(initial, recipe, rows), fixed_noise_loss(trained.model, recipe, rows)
    assert after < 0.8 * before, (before, after)

    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-40", "checkpoint-60"]  # keep_last 2
    assert (run / "recipe.yaml").is_file()
    answer = trained.generate(
        ["Türkiye'nin başkenti"], GenerationConfig(steps=4, max_new_tokens=8, block_length=8, seed=0)
    )
    assert isinstance(answer[0], str)

    plot = tmp_path / "loss.png"
    result = RUNNER.invoke(app, ["plot-loss", str(run), "--output", str(plot), "--smoothing", "5"])
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# The killed run: a subprocess that SIGKILLs itself right after logging step 6 (checkpoint-4 exists).
KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    torch.set_num_threads(int(sys.argv[2]))  # as many as the test process: same float rounding
    from diffutron.training import callbacks
    from diffutron.training.config import load_training_recipe
    from diffutron.training.run import train

    log = callbacks.JsonlLogger.on_log
    def on_log(self, args, state, control, logs=None, **kwargs):
        log(self, args, state, control, logs, **kwargs)
        if state.global_step == 6:
            os.kill(os.getpid(), signal.SIGKILL)
    callbacks.JsonlLogger.on_log = on_log
    train(load_training_recipe(sys.argv[1]))
    """
)


def test_sigkilled_run_resumes_to_the_same_weights(pretrain_recipe, tmp_path):
    model = {"from_scratch": {**TINY_MODEL, "mlp_dropout": 0.1, "attention_dropout": 0.1}}  # RNG matters
    straight = pretrain_recipe("straight.yaml", model=model, output_dir=str(tmp_path / "straight"))
    killed = pretrain_recipe("killed.yaml", model=model, output_dir=str(tmp_path / "killed"))
    train(straight)

    process = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(killed), str(torch.get_num_threads())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    run = tmp_path / "killed"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-4"]
    assert not (run / "final").exists()
    assert [r["step"] for r in read_log(run / "log.jsonl")] == [1, 2, 3, 4, 5, 6]

    train(killed, "--resume")
    assert [r["step"] for r in read_log(run / "log.jsonl")] == list(range(1, 9))  # steps 5, 6 redone once
    expected, actual = weights(tmp_path / "straight"), weights(run)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name  # bit-identical


def test_resume_needs_a_complete_checkpoint(pretrain_recipe, tmp_path):
    recipe = pretrain_recipe()
    incomplete = tmp_path / "run" / "checkpoint-4"
    incomplete.mkdir(parents=True)
    shutil.copy(recipe, tmp_path / "run" / "recipe.yaml")  # a run writes its recipe first
    (incomplete / "model.safetensors").write_bytes(b"")  # no trainer_state.json: never published
    result = RUNNER.invoke(app, ["train", str(recipe), "--resume"])
    assert result.exit_code == 2
    assert "holds no complete checkpoint" in message(result)


def test_an_existing_run_is_not_overwritten(pretrain_recipe, tmp_path):
    recipe = pretrain_recipe()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    shutil.copy(recipe, tmp_path / "run" / "recipe.yaml")
    (checkpoint / "trainer_state.json").write_text("{}", encoding="utf-8")
    result = RUNNER.invoke(app, ["train", str(recipe)])
    assert result.exit_code == 2 and "--resume" in message(result)


def test_missing_column_is_reported(pretrain_recipe, tmp_path):
    bad = save_dataset(tmp_path / "only-text", {"text": ["merhaba"]})
    result = RUNNER.invoke(app, ["train", str(pretrain_recipe(data={"train": str(bad)}))])
    assert result.exit_code == 2
    assert "lacks column(s) input_ids" in message(result) and "columns found: text" in message(result)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_checkpoint, sft_dir):
    tmp_path = tmp_path_factory.mktemp("lora")
    recipe = write_recipe(
        tmp_path / "lora.yaml",
        task="sft",
        output_dir=str(tmp_path / "lora-run"),
        model={"name_or_path": str(tiny_checkpoint)},
        data={"train": str(sft_dir), "eval": str(sft_dir)},
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
        optimizer={"lr": 0.05, "warmup": 0},
        training={"batch_size": 4, "max_steps": 4, "max_length": 96, "precision": "fp32"},
        checkpoints={"save_steps": 4, "keep_last": 1},
        logging={"tensorboard": False},
    )
    train(recipe)
    return tmp_path / "lora-run"


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


def test_lora_sft_run_and_merge(lora_run, tmp_path, tiny_checkpoint):
    from peft import PeftModel

    from diffutron.model.loading import load_checkpoint

    assert any("eval_loss" in record for record in read_log(lora_run / "log.jsonl"))  # evaluated at the checkpoint
    adapter = lora_run / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file() and (lora_run / "final" / "model.safetensors").is_file()
    out = tmp_path / "merged"
    result = RUNNER.invoke(app, ["merge-lora", str(adapter), str(out)])
    assert result.exit_code == 0, result.output

    base, tokenizer = load_checkpoint(tiny_checkpoint, device="cpu", dtype="float32")
    base_logits_ids = torch.randint(0, len(tokenizer), (2, 20), generator=torch.Generator().manual_seed(3))
    base_logits = _logits(base, base_logits_ids)
    adapted = PeftModel.from_pretrained(base, adapter)
    expected = _logits(adapted, base_logits_ids)
    assert not torch.allclose(expected, base_logits, atol=1e-3)  # the adapter changed the model
    merged = Diffutron.from_pretrained(out, device="cpu", dtype="float32").model
    assert torch.allclose(_logits(merged, base_logits_ids), expected, atol=1e-4, rtol=1e-4)
    # the MLM head is kept (and, never adapted, equals the base model's)
    base_state = load_file(tiny_checkpoint / "model.safetensors")
    merged_state = load_file(out / "model.safetensors")
    head = [name for name in base_state if name.startswith(("head.", "decoder."))]
    assert head and all(torch.equal(base_state[name], merged_state[name]) for name in head)
    final_state = load_file(lora_run / "final" / "model.safetensors")  # merged at the end of training
    assert all(torch.allclose(final_state[name], merged_state[name], atol=1e-6) for name in merged_state)


def test_merge_that_loses_the_adapter_writes_nothing(lora_run, tmp_path, monkeypatch):
    from peft.tuners.tuners_utils import BaseTuner

    monkeypatch.setattr(BaseTuner, "merge_and_unload", lambda self, **_: self.unload())  # a broken merge
    out = tmp_path / "merged"
    result = RUNNER.invoke(app, ["merge-lora", str(lora_run / "adapter"), str(out)])
    assert result.exit_code == 2 and "merged logits differ" in message(result)
    assert not out.exists() and not list(tmp_path.glob(".merged*"))


class RowNoise(MDLMObjective):
    """Noise that each row draws alone (t = 0.5, masks from its ids and positions), so that the same
    rows get the same loss however they are split into micro-batches."""

    def sample_times(self, batch_size, device, generator=None):
        return torch.full((batch_size,), 0.5, device=device)

    def corrupt(self, input_ids, labels, t, mask_token_id, generator=None):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        masked = ((input_ids * 7 + positions) % 3 == 0) & (labels != IGNORE_INDEX)
        return torch.where(masked, mask_token_id, input_ids), masked


def test_gradient_accumulation_2_trains_as_one_step_at_double_the_batch(tmp_path, tokenizer_dir, pretrain_dir):
    """The paper's recipes accumulate 2 micro-batches: each step must see their mean loss, not the sum.

    Same rows per step, same noise per row: the logged loss and gradient norm of every step and the
    final weights equal those of batches twice the size without accumulation (float tolerance).
    """
    runs = {}
    for name, batch_size, accumulation in (("whole", 8, 1), ("accumulated", 4, 2)):
        training = {"batch_size": batch_size, "gradient_accumulation": accumulation, "max_steps": 4}
        sections = pretrain_sections(tmp_path / name, tokenizer_dir, pretrain_dir, training=training)
        trainer = build_trainer(load_training_recipe(write_recipe(tmp_path / f"{name}.yaml", **sections)))
        trainer.objective = RowNoise(weighting="ones")
        trainer.train()
        runs[name] = (read_log(tmp_path / name / LOG_NAME), dict(trainer.model.named_parameters()))
    (whole_log, whole), (accumulated_log, accumulated) = runs["whole"], runs["accumulated"]
    assert [record["step"] for record in accumulated_log] == [1, 2, 3, 4]
    for key in ("loss", "grad_norm"):
        expected = [record[key] for record in whole_log]
        assert [record[key] for record in accumulated_log] == pytest.approx(expected, rel=1e-5), key
    for name, parameter in whole.items():
        torch.testing.assert_close(accumulated[name], parameter, rtol=1e-5, atol=1e-6)
