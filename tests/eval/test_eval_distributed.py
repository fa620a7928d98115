"""lm-eval with the `diffutron` model under torchrun: two CPU processes (gloo) split the requests and
rank 0 reports the same scores as a single process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from diffutron.eval.cetvel import resolve_tasks, run_cetvel
from diffutron.eval.harness_model import DiffutronHarnessLM

TASKS = ["ironytr", "news_cat"]
MODEL_ARGUMENTS = {"mc_num": 4, "batch_size": 8, "device": "cpu"}

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from diffutron.eval.cetvel import resolve_tasks, run_cetvel
    from diffutron.eval.harness_model import DiffutronHarnessLM

    checkpoint, data_dir, out, tasks, arguments = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4], sys.argv[5]
    harness = DiffutronHarnessLM(pretrained=checkpoint, **json.loads(arguments))
    served = []
    original = harness.loglikelihood
    harness.loglikelihood = lambda requests, **kw: served.append(len(requests)) or original(requests, **kw)
    report = run_cetvel(harness, resolve_tasks(tasks.split(",")), data_dir=data_dir, bootstrap_iters=0)
    (out / f"served-{harness.rank}.json").write_text(json.dumps({"world": harness.world_size, "served": served}))
    assert (report is None) == (harness.rank != 0)
    if report is not None:
        (out / "report.json").write_text(json.dumps(report))
    """
)


def test_two_processes_split_the_requests_and_score_like_one(tmp_path, tiny_checkpoint, cetvel_data_dir):
    script = tmp_path / "evaluate.py"
    script.write_text(SCRIPT, encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(tiny_checkpoint),
        str(cetvel_data_dir),
        str(tmp_path),
        ",".join(TASKS),
        json.dumps(MODEL_ARGUMENTS),
    ]
    process = subprocess.run(
        command, capture_output=True, text=True, timeout=240, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]

    single = run_cetvel(
        DiffutronHarnessLM(pretrained=str(tiny_checkpoint), **MODEL_ARGUMENTS),
        resolve_tasks(TASKS),
        data_dir=cetvel_data_dir,
        bootstrap_iters=0,
    )
    both = json.loads((tmp_path / "report.json").read_text())
    assert [row["task"] for row in both["tasks"]] == [row["task"] for row in single["tasks"]]
    for mine, reference in zip(both["tasks"], single["tasks"]):
        assert mine["n"] == reference["n"] and mine["metrics"] == reference["metrics"], mine["task"]

    served = [json.loads((tmp_path / f"served-{rank}.json").read_text()) for rank in (0, 1)]
    assert all(record["world"] == 2 for record in served)
    per_rank = [sum(record["served"]) for record in served]
    assert all(count > 0 for count in per_rank)  # each process scored its own share, not everything
    assert max(per_rank) < sum(per_rank)
