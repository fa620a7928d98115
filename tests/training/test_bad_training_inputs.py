"""Bad training inputs as tables: recipes, run directories, --resume, training data, merge-lora, plot-loss.

Each row is one bad input and a fragment of the one-line error it must give. Beyond the message, the
tests check that nothing was destroyed (the inputs are byte-for-byte the same afterwards) and, where
the check must come first, that no work was started. A new command or input joins a table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from diffutron.data.prepared import MANIFEST
from diffutron.errors import DiffutronError
from diffutron.model.tokens import tokenizer_fingerprint
from diffutron.training import run
from diffutron.training.callbacks import LOG_NAME, read_log
from diffutron.training.config import load_training_recipe
from diffutron.training.merge import merge_lora
from diffutron.training.plot import plot_loss
from helpers.tiny import build_tokenizer, save_checkpoint
from helpers.training_data import pretrain_sections, write_recipe

UNWRITABLE = Path("/sys/diffutron-test-output")  # sysfs: no new entries, not even for root


def snapshot(path: Path) -> dict[str, str]:
    """Every file under `path` (or `path` itself) with a hash of its bytes."""
    files = [path] if path.is_file() else sorted(item for item in path.rglob("*") if item.is_file())
    return {str(file.relative_to(path.parent)): hashlib.sha256(file.read_bytes()).hexdigest() for file in files}


def truncate(file: Path, keep: float = 0.5) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])


def never_called(*_, **__):
    raise AssertionError("the work started before the input was checked")


# --- recipe values ------------------------------------------------------------------------------

RECIPE_VALUES = [
    ("optimizer.lr=-1", "optimizer.lr must be a finite number >= 0"),
    ("optimizer.lr=.nan", "optimizer.lr: expected a finite number, got nan"),
    ("optimizer.lr=.inf", "optimizer.lr: expected a finite number, got inf"),
    ("optimizer.lr=inf", "optimizer.lr: expected a finite number, got inf"),
    ("optimizer.lr=-1e400", "optimizer.lr: expected a finite number, got -inf"),
    ("optimizer.weight_decay=-0.01", "optimizer.weight_decay must be a finite number >= 0"),
    ("optimizer.warmup=-1", "optimizer.warmup must be a finite number >= 0"),
    ("optimizer.warmup=2.5", "optimizer.warmup must be a ratio below 1 or a whole number of steps"),
    ("optimizer.max_grad_norm=-1", "optimizer.max_grad_norm must be a finite number >= 0"),
    ("optimizer.max_grad_norm=.inf", "optimizer.max_grad_norm: expected a finite number"),
    ("training.epochs=0", "training.epochs must be a finite number > 0"),
    ("training.epochs=-2", "training.epochs must be a finite number > 0"),
    ("training.epochs=.nan", "training.epochs: expected a finite number"),
    ("training.max_steps=0", "training.max_steps must be a finite number >= 1"),
    ("training.max_steps=-5", "training.max_steps must be a finite number >= 1"),
    ("training.max_steps=1e400", "training.max_steps: expected a whole number"),
    ("training.dataloader_workers=-1", "training.dataloader_workers must be a finite number >= 0"),
    ("lora.r=0", "lora.r must be a finite number >= 1"),
    ("lora.r=-8", "lora.r must be a finite number >= 1"),
    ("lora.alpha=0", "lora.alpha must be a finite number > 0"),
    ("lora.dropout=1", "lora.dropout must be a finite number in [0, 1)"),
    ("lora.dropout=-0.1", "lora.dropout must be a finite number in [0, 1)"),
    ("lora.dropout=.nan", "lora.dropout: expected a finite number"),
    ("lora.target_modules=[]", "lora.target_modules is empty"),
    ("model.from_scratch.hidden_size=33", "hidden_size 33 is not divisible by num_attention_heads 2"),
    ("model.from_scratch.hidden_size=30", "hidden_size / num_attention_heads = 15 must be even"),
    ("model.from_scratch.num_attention_heads=0", "model.from_scratch.num_attention_heads must be a whole number >= 1"),
    ("model.from_scratch.hidden_size=big", "model.from_scratch.hidden_size must be a whole number >= 1, got 'big'"),
    ("model.from_scratch.hidden_size=.nan", "model.from_scratch.hidden_size: expected a finite number"),
    ("model.from_scratch.attention_dropout=.inf", "model.from_scratch.attention_dropout: expected a finite number"),
    ("objective.eps=.nan", "objective.eps: expected a finite number"),
    ("seed=.inf", "seed: expected a whole number"),
]


@pytest.mark.parametrize(("override", "fragment"), RECIPE_VALUES, ids=[row[0] for row in RECIPE_VALUES])
def test_bad_recipe_value(pretrain_recipe, override, fragment):
    with pytest.raises(DiffutronError, match=re.escape(fragment)):
        load_training_recipe(pretrain_recipe(), [override])


def test_zero_learning_rate_and_no_clipping_are_allowed(pretrain_recipe):
    base = ["model.from_scratch=null", "model.name_or_path=a/base"]  # LoRA adapts a trained base
    recipe = load_training_recipe(pretrain_recipe(), [*base, "optimizer.lr=0", "optimizer.max_grad_norm=0", "lora.r=1"])
    assert (recipe.optimizer.lr, recipe.optimizer.max_grad_norm, recipe.lora.r) == (0.0, 0.0, 1)


# --- output_dir: checked before anything is loaded or trained -------------------------------------


def _a_file(tmp: Path, data: Path) -> Path:
    (tmp / "out").write_text("notes", encoding="utf-8")
    return tmp / "out"


def _another_data_folder(tmp: Path, data: Path) -> Path:
    shutil.copytree(data, tmp / "other-data")
    return tmp / "other-data"


def _a_folder_of_other_files(tmp: Path, data: Path) -> Path:
    (tmp / "notes").mkdir()
    (tmp / "notes" / "todo.txt").write_text("buy tea", encoding="utf-8")
    return tmp / "notes"


def _under_a_file(tmp: Path, data: Path) -> Path:
    return _a_file(tmp, data) / "run"


def _a_run_without_its_recipe(tmp: Path, data: Path) -> Path:
    (tmp / "run" / "checkpoint-4").mkdir(parents=True)
    (tmp / "run" / "checkpoint-4" / "trainer_state.json").write_text("{}", encoding="utf-8")
    return tmp / "run"


OUTPUT_DIRS: list[tuple[str, Callable[[Path, Path], Path], str]] = [
    ("a file", _a_file, "is a file, not a directory"),
    ("another data folder", _another_data_folder, "holds files but is not a training run"),
    ("a folder of other files", _a_folder_of_other_files, "holds files but is not a training run"),
    ("folder without recipe.yaml", _a_run_without_its_recipe, "holds files but is not a training run"),
    ("under a file", _under_a_file, "is a file, not a directory"),
    ("unwritable", lambda tmp, data: UNWRITABLE / "run", "is not writable"),
    ("the training data", lambda tmp, data: data, "holds the input"),
    ("inside the training data", lambda tmp, data: data / "run", "lies inside the input"),
]


@pytest.mark.parametrize(("make", "fragment"), [row[1:] for row in OUTPUT_DIRS], ids=[row[0] for row in OUTPUT_DIRS])
def test_bad_output_dir_is_refused_before_training(
    pretrain_recipe, pretrain_dir, tmp_path, monkeypatch, make, fragment
):
    data = tmp_path / "data"
    shutil.copytree(pretrain_dir, data)
    output = make(tmp_path, data)
    recipe = load_training_recipe(pretrain_recipe("recipe.yaml", output_dir=str(output), data={"train": str(data)}))
    before = snapshot(tmp_path)
    monkeypatch.setattr(run, "build_trainer", never_called)
    with pytest.raises(DiffutronError, match=re.escape(fragment)):
        run.train(recipe)
    assert snapshot(tmp_path) == before  # nothing written, nothing removed


# --- training data ------------------------------------------------------------------------------


def _truncated_shard(data: Path) -> str:
    shard = next(data.glob("*.arrow"))
    truncate(shard)
    return f"{shard} is truncated"


def _shard_cut_at_a_batch_boundary(data: Path) -> str:
    shard = next(data.glob("*.arrow"))
    shard.write_bytes(shard.read_bytes()[:-8])  # only the end-of-stream marker is lost: rows silently missing
    return f"{shard} is truncated"


def _missing_shard(data: Path) -> str:
    shard = next(data.glob("*.arrow"))
    shard.unlink()
    return f"{shard} is missing"


def _fewer_rows_than_the_manifest(data: Path) -> str:
    manifest = json.loads((data / MANIFEST).read_text(encoding="utf-8"))
    manifest["statistics"] = {"rows": 1000}
    (data / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return "holds 48 rows but its manifest.json records 1,000"


def _manifest_not_json(data: Path) -> str:
    (data / MANIFEST).write_text("{not json", encoding="utf-8")
    return f"{data / MANIFEST} cannot be read"


def _built_with_another_tokenizer(data: Path) -> str:
    manifest = json.loads((data / MANIFEST).read_text(encoding="utf-8"))
    other = build_tokenizer(vocab_size=280)
    manifest.update(tokenizer="other-tokenizer", tokenizer_fingerprint=tokenizer_fingerprint(other))
    (data / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return "data.train: " + f"{data} was built with the tokenizer 'other-tokenizer', whose vocabulary differs"


TRAINING_DATA = [
    ("truncated shard", _truncated_shard),
    ("shard cut at a batch boundary", _shard_cut_at_a_batch_boundary),
    ("missing shard", _missing_shard),
    ("fewer rows than the manifest", _fewer_rows_than_the_manifest),
    ("manifest not JSON", _manifest_not_json),
    ("built with another tokenizer", _built_with_another_tokenizer),
]


@pytest.mark.parametrize("damage", [row[1] for row in TRAINING_DATA], ids=[row[0] for row in TRAINING_DATA])
def test_bad_training_data(pretrain_recipe, pretrain_dir, tmp_path, damage):
    data = tmp_path / "data"
    shutil.copytree(pretrain_dir, data)
    fragment = damage(data)
    recipe = load_training_recipe(pretrain_recipe(data={"train": str(data)}))
    with pytest.raises(DiffutronError, match=re.escape(fragment)):
        run.train(recipe)
    assert not (tmp_path / "run" / "final").exists()


def test_data_built_with_the_same_tokenizer_elsewhere_trains(pretrain_recipe, pretrain_dir, tiny_tokenizer, tmp_path):
    """The fingerprint is of the vocabulary, so another copy of the same tokenizer is accepted."""
    data = tmp_path / "data"
    shutil.copytree(pretrain_dir, data)
    manifest = json.loads((data / MANIFEST).read_text(encoding="utf-8"))
    manifest.update(tokenizer="/elsewhere/tiny", tokenizer_fingerprint=tokenizer_fingerprint(tiny_tokenizer))
    (data / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    recipe = load_training_recipe(pretrain_recipe(data={"train": str(data)}, training={"max_steps": 1}))
    assert run.train(recipe) == tmp_path / "run" / "final"


def test_a_diverging_run_stops_with_an_error_and_no_final_model(pretrain_recipe, tmp_path):
    recipe = load_training_recipe(pretrain_recipe(optimizer={"lr": 1e30, "warmup": 0}))  # finite, but far too large
    with pytest.raises(DiffutronError, match=r"the training loss is nan at step \d+: the run diverged"):
        run.train(recipe)
    assert not (tmp_path / "run" / "final").exists()
    assert any(math.isnan(record.get("loss", 0.0)) for record in read_log(tmp_path / "run" / LOG_NAME))


# --- --resume -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tokenizer_dir, pretrain_dir) -> Path:
    """8 steps, checkpoints at 4 and 8, final model: the run the --resume cases copy."""
    folder = tmp_path_factory.mktemp("finished")
    path = write_recipe(folder / "recipe.yaml", **pretrain_sections(folder / "run", tokenizer_dir, pretrain_dir))
    run.train(load_training_recipe(path))
    return folder / "run"


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A copy of the finished run at tmp_path/run, where `pretrain_recipe` points output_dir."""
    shutil.copytree(finished_run, tmp_path / "run")
    return tmp_path / "run"


def final_weights(run_dir: Path) -> dict:
    return load_file(run_dir / "final" / "model.safetensors")


def assert_same_weights(expected: dict, actual: dict) -> None:
    assert expected.keys() == actual.keys()
    assert all(expected[name].equal(actual[name]) for name in expected)  # bit for bit


def test_resume_of_a_finished_run_changes_nothing(pretrain_recipe, run_copy, monkeypatch, caplog):
    before = snapshot(run_copy)
    monkeypatch.setattr(run, "build_trainer", never_called)
    with caplog.at_level(logging.WARNING):
        assert run.train(load_training_recipe(pretrain_recipe()), resume=True) == run_copy / "final"
    assert "is a finished run (final/ exists); nothing to do" in caplog.text
    assert snapshot(run_copy) == before  # no extra step, no new checkpoint, final/ untouched


def test_resume_at_the_last_checkpoint_takes_no_extra_step(pretrain_recipe, run_copy):
    """The final save failed after the last checkpoint: --resume writes final/ from it, training nothing."""
    expected = final_weights(run_copy)
    shutil.rmtree(run_copy / "final")
    run.train(load_training_recipe(pretrain_recipe()), resume=True)
    assert sorted(path.name for path in run_copy.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    assert [record["step"] for record in read_log(run_copy / LOG_NAME)] == list(range(1, 9))
    assert_same_weights(expected, final_weights(run_copy))


RECIPE_CHANGES = [
    ({"optimizer": {"lr": 1e-3}}, "optimizer.lr (0.003 -> 0.001)"),
    ({"training": {"max_steps": 16}}, "training.max_steps (8 -> 16)"),
    ({"checkpoints": {"save_steps": 2}}, "checkpoints.save_steps (4 -> 2)"),
    ({"objective": {"schedule": "cosine"}}, "objective.schedule ('linear' -> 'cosine')"),
    ({"seed": 8}, "seed (7 -> 8)"),
]


@pytest.mark.parametrize(("changes", "fragment"), RECIPE_CHANGES, ids=[row[1].split()[0] for row in RECIPE_CHANGES])
def test_resume_with_a_changed_recipe_is_refused(pretrain_recipe, run_copy, changes, fragment):
    shutil.rmtree(run_copy / "final")  # unfinished, so that only the recipe stands in the way
    before = snapshot(run_copy)
    with pytest.raises(DiffutronError, match=re.escape("--resume: the recipe differs from the run's")) as error:
        run.train(load_training_recipe(pretrain_recipe(**changes)), resume=True)
    assert fragment in str(error.value) and "keeps its recipe" in str(error.value)
    assert snapshot(run_copy) == before  # recipe.yaml still tells the truth


def test_resume_with_only_logging_changed_continues_and_records_it(pretrain_recipe, run_copy, caplog):
    expected = final_weights(run_copy)
    shutil.rmtree(run_copy / "final")
    shutil.rmtree(run_copy / "checkpoint-8")
    with (run_copy / LOG_NAME).open("a", encoding="utf-8") as log:
        log.write('{"step": 9, "lo')  # a line torn by a kill while it was appended
    with caplog.at_level(logging.WARNING):
        run.train(load_training_recipe(pretrain_recipe(logging={"steps": 2})), resume=True)
    assert "--resume: logging.steps changed; the new values apply from here on" in caplog.text
    assert "line 9 is cut short" in caplog.text
    assert load_training_recipe(run_copy / "recipe.yaml").logging.steps == 2  # recorded as it now is
    assert_same_weights(expected, final_weights(run_copy))  # logging does not change the training


def delete(name: str) -> Callable[[Path], None]:
    return lambda checkpoint: (checkpoint / name).unlink()


# (name, damage done to the newest checkpoint, what the warning says of it)
DAMAGED_CHECKPOINTS = [
    (
        "truncated weights",
        lambda checkpoint: truncate(checkpoint / "model.safetensors"),
        "model.safetensors is damaged or truncated",
    ),
    (
        "truncated optimizer",
        lambda checkpoint: truncate(checkpoint / "optimizer.pt"),
        "optimizer.pt is damaged or truncated",
    ),
    (
        "corrupt trainer state",
        lambda checkpoint: (checkpoint / "trainer_state.json").write_text("{", encoding="utf-8"),
        "trainer_state.json is damaged or truncated",
    ),
    ("deleted weights", delete("model.safetensors"), "model.safetensors is missing"),
    ("deleted optimizer", delete("optimizer.pt"), "optimizer.pt is missing"),
    ("deleted scheduler", delete("scheduler.pt"), "scheduler.pt is missing"),
    ("deleted RNG state", delete("rng_state.pth"), "rng_state.pth is missing"),
    ("deleted noise state", delete("mdlm_noise_state.pth"), "mdlm_noise_state.pth is missing"),
    ("deleted trainer state", delete("trainer_state.json"), "trainer_state.json is missing"),
    (
        "deleted file list",
        delete("checkpoint_files.json"),
        "checkpoint_files.json is missing, so the checkpoint's files cannot be checked",
    ),
    (
        "optimizer grown",
        lambda checkpoint: (checkpoint / "optimizer.pt").open("ab").write(b"\0"),
        "optimizer.pt is damaged or truncated",
    ),
]


@pytest.mark.parametrize(
    ("damage", "problem"), [row[1:] for row in DAMAGED_CHECKPOINTS], ids=[row[0] for row in DAMAGED_CHECKPOINTS]
)
def test_resume_falls_back_from_a_damaged_newest_checkpoint(pretrain_recipe, run_copy, caplog, damage, problem):
    expected = final_weights(run_copy)
    shutil.rmtree(run_copy / "final")
    damage(run_copy / "checkpoint-8")
    with caplog.at_level(logging.WARNING):
        run.train(load_training_recipe(pretrain_recipe()), resume=True)
    warnings = [record.getMessage() for record in caplog.records if record.name.endswith("checkpoints")]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith(f"--resume: {run_copy / 'checkpoint-8'}/{problem}")
    assert warnings[0].endswith("; resuming from the previous complete checkpoint, checkpoint-4")
    assert_same_weights(expected, final_weights(run_copy))  # steps 5-8 redone exactly


def test_the_file_list_names_every_file_of_a_checkpoint(run_copy):
    listed = json.loads((run_copy / "checkpoint-8" / "checkpoint_files.json").read_text(encoding="utf-8"))["files"]
    files = sorted(item.name for item in (run_copy / "checkpoint-8").iterdir() if item.name != "checkpoint_files.json")
    assert sorted(listed) == files
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "mdlm_noise_state.pth"):
        assert listed[name] == (run_copy / "checkpoint-8" / name).stat().st_size


@pytest.mark.parametrize(
    ("damage", "problem"),
    [(row[1], row[2]) for row in DAMAGED_CHECKPOINTS if row[0] in ("truncated weights", "deleted optimizer")],
    ids=["truncated weights", "deleted optimizer"],
)
def test_resume_with_every_checkpoint_damaged_exits_2(pretrain_recipe, run_copy, damage, problem):
    from typer.testing import CliRunner

    from diffutron.cli import app

    shutil.rmtree(run_copy / "final")
    for checkpoint in run_copy.glob("checkpoint-*"):
        damage(checkpoint)
    before = snapshot(run_copy)
    result = CliRunner().invoke(app, ["train", str(pretrain_recipe()), "--resume"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"every checkpoint in {run_copy} is damaged" in " ".join(result.output.split())
    assert f"checkpoint-8/{problem}" in lines[0] and f"checkpoint-4/{problem}" in lines[0]
    assert snapshot(run_copy) == before  # nothing trained, nothing deleted


# --- merge-lora ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_checkpoint) -> Path:
    """A LoRA adapter on the tiny checkpoint, as peft saves one (its config names the base)."""
    from peft import LoraConfig, get_peft_model

    from diffutron.model.loading import load_checkpoint

    model, _ = load_checkpoint(str(tiny_checkpoint), device="cpu", dtype="float32")
    adapted = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["Wqkv", "Wo", "Wi"]))
    path = tmp_path_factory.mktemp("adapter") / "adapter"
    adapted.save_pretrained(path)
    return path


def _set_config(adapter_dir: Path, **changes) -> None:
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    config.update(changes)
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")


def _other_base(tmp: Path, **sizes: int) -> str:
    return str(save_checkpoint(tmp / "other-base", **sizes))


def _existing_output(adapter_dir: Path, tmp: Path) -> dict:
    (tmp / "merged").mkdir()
    return {"out_dir": tmp / "merged"}


def _config_only(adapter_dir: Path, tmp: Path) -> dict:
    (adapter_dir / "adapter_model.safetensors").unlink()
    return {"out_dir": tmp / "merged"}


def _truncated_weights(adapter_dir: Path, tmp: Path) -> dict:
    truncate(adapter_dir / "adapter_model.safetensors")
    return {"out_dir": tmp / "merged"}


def _config_not_json(adapter_dir: Path, tmp: Path) -> dict:
    (adapter_dir / "adapter_config.json").write_text("{", encoding="utf-8")
    return {"out_dir": tmp / "merged"}


def _no_base_named(adapter_dir: Path, tmp: Path) -> dict:
    _set_config(adapter_dir, base_model_name_or_path=None)
    return {"out_dir": tmp / "merged"}


# each row: (name, setup(adapter copy, tmp) -> merge_lora keyword arguments besides adapter_dir, fragment)
MERGES: list[tuple[str, Callable[[Path, Path], dict], str]] = [
    ("output is the adapter", lambda a, tmp: {"out_dir": a, "overwrite": True}, "holds the input"),
    ("output holds the adapter", lambda a, tmp: {"out_dir": a.parent, "overwrite": True}, "holds the input"),
    ("output inside the adapter", lambda a, tmp: {"out_dir": a / "merged"}, "lies inside the input"),
    ("output exists", _existing_output, "already exists; choose another output or pass --overwrite"),
    ("output is a file", lambda a, tmp: {"out_dir": a / "adapter_config.json"}, "is a file, not a directory"),
    ("output unwritable", lambda a, tmp: {"out_dir": UNWRITABLE}, "is not writable"),
    ("not an adapter", lambda a, tmp: {"out_dir": tmp / "m", "adapter_dir": tmp}, "no adapter_config.json"),
    ("config only", _config_only, "holds adapter_config.json but no adapter_model.safetensors"),
    ("truncated weights", _truncated_weights, "adapter_model.safetensors is damaged or truncated"),
    ("config not JSON", _config_not_json, "adapter_config.json cannot be read"),
    ("no base named", _no_base_named, "names no base model; pass it with --base"),
    (
        "output is the base",
        lambda a, tmp: {"out_dir": tmp / "other-base", "base": _other_base(tmp), "overwrite": True},
        "holds the input",
    ),
    (
        "base of other sizes",
        lambda a, tmp: {"out_dir": tmp / "m", "base": _other_base(tmp, hidden_size=64)},
        "does not fit the base model",
    ),
    (
        "base with fewer layers",
        lambda a, tmp: {"out_dir": tmp / "m", "base": _other_base(tmp, layers=2)},
        "adapter tensor(s) have no layer in the base",
    ),
    (
        "base with more layers",
        lambda a, tmp: {"out_dir": tmp / "m", "base": _other_base(tmp, layers=4)},
        "adapted layer(s) of the base lack adapter tensors",
    ),
]


@pytest.mark.parametrize(("setup", "fragment"), [row[1:] for row in MERGES], ids=[row[0] for row in MERGES])
def test_bad_merge(adapter, tmp_path, setup, fragment):
    copy = tmp_path / "run" / "adapter"
    shutil.copytree(adapter, copy)
    arguments = {"adapter_dir": copy, **setup(copy, tmp_path)}
    before = snapshot(tmp_path)
    with pytest.raises(DiffutronError, match=re.escape(fragment)):
        merge_lora(**arguments)
    assert snapshot(tmp_path) == before  # the adapter and everything beside it are intact, nothing written


def test_merge_with_the_wrong_base_names_the_mismatch(adapter, tmp_path):
    with pytest.raises(DiffutronError, match=r"size mismatch for .*Wqkv.*; pass the model it was trained on with"):
        merge_lora(adapter, tmp_path / "m", base=_other_base(tmp_path, hidden_size=64))


# --- plot-loss ----------------------------------------------------------------------------------

GOOD_LOG = "".join(json.dumps({"step": step, "loss": 5.0 - step / 10}) + "\n" for step in range(1, 6))


def _log(tmp: Path, text: str) -> Path:
    (tmp / "run").mkdir(exist_ok=True)
    (tmp / "run" / LOG_NAME).write_text(text, encoding="utf-8")
    return tmp / "run"


# each row: (name, setup(tmp) -> (run_dirs, output), fragment)
PLOTS: list[tuple[str, Callable[[Path], tuple[list[Path], Path]], str]] = [
    (
        "malformed line",
        lambda tmp: ([_log(tmp, GOOD_LOG + '{"step": 6, "loss": \n' + GOOD_LOG)], tmp / "loss.png"),
        f"{LOG_NAME}, line 6: Expecting value",
    ),
    (
        "line not an object",
        lambda tmp: ([_log(tmp, GOOD_LOG + "[6, 4.2]\n")], tmp / "loss.png"),
        "line 6: expected a JSON object",
    ),
    (
        "step not a number",
        lambda tmp: ([_log(tmp, '{"step": "one", "loss": 1.0}\n')], tmp / "loss.png"),
        "line 1: step must be a whole number, got 'one'",
    ),
    (
        "loss not a number",
        lambda tmp: ([_log(tmp, '{"step": 1, "loss": "low"}\n')], tmp / "loss.png"),
        "line 1: loss must be a number, got 'low'",
    ),
    ("output a folder", lambda tmp: ([_log(tmp, GOOD_LOG)], tmp), "is a directory, not a file"),
    ("output the log", lambda tmp: ([_log(tmp, GOOD_LOG)], tmp / "run" / LOG_NAME), "holds the input"),
    (
        "output a document",
        lambda tmp: ([_log(tmp, GOOD_LOG)], _a_file(tmp, tmp)),
        "exists and is not a PNG image; it is not replaced",
    ),
    ("output under a file", lambda tmp: ([_log(tmp, GOOD_LOG)], _a_file(tmp, tmp) / "x.png"), "is a file, not a"),
    ("output unwritable", lambda tmp: ([_log(tmp, GOOD_LOG)], UNWRITABLE / "loss.png"), "is not writable"),
    (
        "output checked before the logs are read",
        lambda tmp: ([_log(tmp, "{broken\n")], tmp / "run"),
        "is a directory, not a file",
    ),
]


@pytest.mark.parametrize(("setup", "fragment"), [row[1:] for row in PLOTS], ids=[row[0] for row in PLOTS])
def test_bad_plot(tmp_path, setup, fragment):
    run_dirs, output = setup(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(DiffutronError, match=re.escape(fragment)):
        plot_loss(run_dirs, output)
    assert snapshot(tmp_path) == before


def test_plot_replaces_an_earlier_plot(tmp_path):
    output = tmp_path / "loss.png"
    plot_loss([_log(tmp_path, GOOD_LOG)], output)
    first = output.read_bytes()
    plot_loss([_log(tmp_path, GOOD_LOG)], output, smoothing=2)
    assert output.read_bytes()[:8] == first[:8] == b"\x89PNG\r\n\x1a\n" and output.read_bytes() != first
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no temporary left


class InfiniteLastUpdate(TrainerCallback):
    """Stands in for an update that overflows: the loss logged at a step is computed before its update."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == state.max_steps:
            with torch.no_grad():
                next(model.parameters()).fill_(float("inf"))


def test_weights_made_infinite_by_the_last_step_are_never_published(pretrain_recipe, tmp_path, monkeypatch):
    build_trainer = run.build_trainer

    def with_a_bad_last_update(recipe):
        trainer = build_trainer(recipe)
        trainer.add_callback(InfiniteLastUpdate())
        return trainer

    monkeypatch.setattr(run, "build_trainer", with_a_bad_last_update)
    with pytest.raises(DiffutronError, match=r"training ended with NaN or infinite weights .*; final/ was not written"):
        run.train(load_training_recipe(pretrain_recipe(training={"max_steps": 2})))
    assert not (tmp_path / "run" / "final").exists()
