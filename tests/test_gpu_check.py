"""tools/gpu_check.py runs its CPU form (`--device cpu --small`) without a failing section."""

from __future__ import annotations

from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def test_gpu_check_runs_small_on_the_cpu(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(TOOLS))  # sys.path is restored afterwards, with what the tool adds to it
    import gpu_check

    status = gpu_check.main(["--device", "cpu", "--small", "--budget-scale", "4"])
    output = capsys.readouterr().out
    assert status == 0, output
    lines = dict(line.split(": ", 1) for line in output.splitlines() if ": " in line)
    for section in ("versions", "loading", "modes", "agreement", "speed", "training", "trainer", "likelihood"):
        assert f"{section}.done" in lines, output
    assert not any(key.endswith((".error", ".timeout")) for key in lines), output
    assert all(lines[f"modes.{mode}"].startswith("OK") for mode in ("model_card", "stochastic_transfer", "dual_cache"))
    assert lines["agreement.float32_rows2"].startswith("identical rows 2/2")  # exact on the CPU in float32
    assert lines["loading.int8_auto"] == "loads on cpu"
    assert lines["trainer.resume"].endswith("the uninterrupted run 0")  # bit-exact resume on the CPU
    assert "pairs/s" in lines["likelihood.batch4"] and "calls" in lines["speed.exact_rows1"]
