"""Device choices that matter on GPU machines, checked where they can be on a CPU: the suite's own
pinning, int8 as a CPU mode, the stochastic schedule's generator device, `batch_size=auto`."""

from __future__ import annotations

import os

import pytest
import torch

from diffutron.errors import DiffutronError
from diffutron.eval.batch_size import CPU_BATCH_SIZE, auto_batch_size, largest_that_runs, rows_that_fit
from diffutron.model import loading
from diffutron.model.precision import is_quantized
from diffutron.sampling.commit import CountSchedule
from diffutron.sampling.schedule import stochastic_transfer_counts
from diffutron.sampling.streams import RowStreams


def test_the_suite_hides_gpus_unless_asked():
    if os.environ.get("DIFFUTRON_TEST_DEVICE", "cpu") == "cpu":
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "" and not torch.cuda.is_available()


def test_int8_with_device_auto_goes_to_the_cpu(tiny_checkpoint, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)  # a GPU machine
    model, _ = loading.load_checkpoint(tiny_checkpoint, device="auto", dtype="int8")
    assert next(model.parameters()).device.type == "cpu" and is_quantized(model)


def test_int8_on_an_accelerator_is_refused_before_loading(tiny_checkpoint, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(loading.AutoModelForMaskedLM, "from_pretrained", no_loading)
    monkeypatch.setattr(loading, "_check_available", lambda device: None)  # a machine with two GPUs
    with pytest.raises(DiffutronError, match="int8 works on the CPU only, not on cuda:1"):
        loading.load_checkpoint(tiny_checkpoint, device="cuda:1", dtype="int8")


def test_stochastic_counts_are_drawn_on_the_generators_device(test_device):
    def plans(seeds):
        streams = RowStreams(seeds, test_device)  # each row's generator is on the canvas's device
        return CountSchedule(steps_per_block=4, stochastic=True).plans(9, streams.generators, test_device)

    drawn = plans([5, 6, 7])
    assert len(drawn) == 3 and all(sum(plan) == 9 and 0 not in plan for plan in drawn)
    again = [
        stochastic_transfer_counts(9, 4, torch.Generator(test_device).manual_seed(seed), test_device)
        for seed in (5, 6, 7)
    ]
    assert drawn == [tuple(counts) for counts in again]  # each row from its own stream
    assert plans([5, 6, 7]) == drawn  # by seed


def test_auto_batch_size_on_the_cpu_is_the_fixed_size(tiny_model):
    assert auto_batch_size(tiny_model, 128, torch.device("cpu")) == CPU_BATCH_SIZE


def test_rows_that_fit_divide_the_free_memory():
    assert rows_that_fit(free_bytes=10 * 2**30, bytes_per_row=100 * 2**20) == 81  # 80% of 10 GiB / 100 MiB
    assert rows_that_fit(free_bytes=2**40, bytes_per_row=1) == 512  # capped
    assert rows_that_fit(free_bytes=0, bytes_per_row=2**20) == 1


def test_largest_that_runs_halves_after_running_out_of_memory():
    tried = []

    def run(rows: int) -> None:
        tried.append(rows)
        if rows > 50:
            raise torch.OutOfMemoryError("CUDA out of memory")

    assert largest_that_runs(run, 400) == 50 and tried == [400, 200, 100, 50]
    with pytest.raises(torch.OutOfMemoryError):
        largest_that_runs(lambda rows: run(rows + 100), 4)


def test_each_launched_process_takes_its_own_gpu(monkeypatch):
    from diffutron.distributed import Launch, current_launch, launch_device

    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    second = Launch(rank=3, world_size=4, local_rank=1)
    assert [launch_device(second, d) for d in (None, "auto", "cuda", "cuda:0")] == ["cuda:1"] * 4
    assert launch_device(second, "cpu") == "cpu"
    assert launch_device(Launch(), "cuda:0") == "cuda:0" and launch_device(Launch(), None) is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(DiffutronError, match="inconsistent launch"):
        current_launch()
