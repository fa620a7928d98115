"""`diffutron train` under torchrun: two CPU processes (DDP over gloo) on a tiny prepared dataset."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from diffutron.lm import Diffutron
from diffutron.training.callbacks import read_log
from diffutron.training.run import load_training_data

PROCESSES = 2
BATCH_SIZE = 4
STEPS = 4


def torchrun_train(recipe: Path, *options: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 -m diffutron train RECIPE`, one thread per process."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={PROCESSES}"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.run(
        [*command, "-m", "diffutron", "train", str(recipe), *options],
        capture_output=True,
        text=True,
        timeout=240,
        env=environment,
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    return process


def test_two_process_run_trains_once_and_resumes_bit_exactly(pretrain_recipe, pretrain_dir, tmp_path):
    # rows cut to a length none is shorter than give every batch of every rank the same shape, so the
    # ranks consume their noise generators alike: their saved states differ only if their seeds do
    rows = load_training_data(str(pretrain_dir), "pretrain")["input_ids"]
    length = min(map(len, rows))
    assert length >= 8
    recipe = pretrain_recipe(
        training={"batch_size": BATCH_SIZE, "max_steps": STEPS, "max_length": length},
        checkpoints={"save_steps": 2, "keep_last": 2},
    )
    run = tmp_path / "run"
    process = torchrun_train(recipe)
    assert process.stdout.count("final model:") == 1  # reported by rank 0 only

    # one log record per step, written by rank 0 only; each process saw half of every global batch
    records = read_log(run / "log.jsonl")
    assert [record["step"] for record in records] == list(range(1, STEPS + 1))
    assert math.isclose(records[0]["epoch"], 1 / math.ceil(len(rows) / (PROCESSES * BATCH_SIZE)))

    # checkpoints: the main process writes (and publishes, once) the model, optimizer and state;
    # each process adds its own RNG and masking-noise state, and the ranks' noise differs
    assert sorted(path.name for path in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    files = {path.name for path in (run / "checkpoint-4").iterdir()}
    per_rank = {f"{name}_{rank}.pth" for name in ("rng_state", "mdlm_noise_state") for rank in range(PROCESSES)}
    assert per_rank <= files and "rng_state.pth" not in files and "mdlm_noise_state.pth" not in files
    assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"} <= files
    noise = [torch.load(run / "checkpoint-4" / f"mdlm_noise_state_{rank}.pth") for rank in range(PROCESSES)]
    assert not torch.equal(noise[0], noise[1])
    assert not any((run / ".staging").iterdir())  # nothing left half-published

    model = Diffutron.from_pretrained(run / "final", device="cpu", dtype="float32")
    assert model.model.config.num_hidden_layers == 2
    final = load_file(run / "final" / "model.safetensors")
    checkpoint = load_file(run / "checkpoint-4" / "model.safetensors")
    assert final.keys() == checkpoint.keys() and all(torch.equal(final[name], checkpoint[name]) for name in final)

    # resuming from checkpoint-2 (every rank's data position, RNG and noise state) redoes steps 3-4 exactly
    straight = tmp_path / "straight-final"
    shutil.copytree(run / "final", straight)
    shutil.rmtree(run / "checkpoint-4")
    shutil.rmtree(run / "final")
    torchrun_train(recipe, "--resume")
    assert [record["step"] for record in read_log(run / "log.jsonl")] == list(range(1, STEPS + 1))
    resumed = load_file(run / "final" / "model.safetensors")
    expected = load_file(straight / "model.safetensors")
    assert expected.keys() == resumed.keys() and all(torch.equal(expected[name], resumed[name]) for name in expected)
