"""benchmarks/gpu_check.py runs its CPU form (`--device cpu --small`) without a failing section."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_gpu_check_runs_small_on_the_cpu(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its neighbour common.py
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--device", "cpu", "--small", "--budget-scale", "4"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(BENCHMARKS / "gpu_check.py"), run_name="__main__")
    output = capsys.readouterr().out
    assert exit_info.value.code == 0, output
    lines = dict(line.split(": ", 1) for line in output.splitlines() if ": " in line)
    for section in ("versions", "loading", "modes", "agreement", "speed", "training", "trainer", "likelihood"):
        assert f"{section}.done" in lines, output
    assert not any(key.endswith((".error", ".timeout")) for key in lines), output
    assert all(lines[f"modes.{mode}"].startswith("OK") for mode in ("model_card", "stochastic_transfer", "dual_cache"))
    assert lines["agreement.float32_rows2"].startswith("identical rows 2/2")  # exact on the CPU in float32
    assert lines["loading.int8_auto"] == "loads on cpu"
    assert lines["trainer.resume"].endswith("the uninterrupted run 0")  # bit-exact resume on the CPU
    assert "pairs/s" in lines["likelihood.batch4"] and "calls" in lines["speed.exact_rows1"]
