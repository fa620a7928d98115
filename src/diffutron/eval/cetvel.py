"""The paper's seven CETVEL tasks (docs/reference-behaviour.md, section 8): run them through lm-eval and report them
beside chance and majority-class baselines, because most scores of a 0.3B model sit near chance."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from diffutron.errors import DiffutronError
from diffutron.eval.task_functions import DROPPED_DOCUMENTS

TAG = "diffutron_cetvel"


@dataclass(frozen=True)
class CetvelTask:
    name: str  # short name, as on the command line
    title: str  # as in the paper's Table 4
    paper: float  # the paper's score (2nd-stage model, accuracy in %)

    @property
    def harness_name(self) -> str:
        """Distinct from lm-eval's built-ins (belebele_tr, xcopa_tr, ... exist there)."""
        return f"diffutron_{self.name}"


TASKS = (
    CetvelTask("belebele_tr", "Belebele_TR", 27.00),
    CetvelTask("exams_tr", "EXAMS_TR", 27.74),
    CetvelTask("ironytr", "IronyTR", 52.00),
    CetvelTask("news_cat", "News_Cat", 32.40),
    CetvelTask("mnli_tr", "MNLI_TR", 32.81),
    CetvelTask("sts_tr", "STS_TR", 18.78),
    CetvelTask("xcopa_tr", "XCOPA_TR", 52.00),
)
PAPER_AVERAGE = 34.68


def tasks_dir() -> Path:
    """The task YAML files shipped inside the package (lm-eval `include_path`)."""
    return Path(str(resources.files("diffutron.eval") / "tasks"))


def resolve_tasks(names: Sequence[str] | None) -> list[CetvelTask]:
    """Tasks by short or harness name, in the paper's order; all of them when `names` is empty."""
    if not names:
        return list(TASKS)
    wanted = {name.strip() for entry in names for name in entry.split(",") if name.strip()}
    if not wanted:
        raise DiffutronError(
            f"the task list {list(names)!r} names no task: name some (e.g. news_cat,exams), or none at all "
            "(leave out --tasks) for all seven"
        )
    known = {task.name: task for task in TASKS} | {task.harness_name: task for task in TASKS}
    unknown = sorted(wanted - set(known))
    if unknown:
        raise DiffutronError(f"unknown task(s) {', '.join(unknown)}; the tasks are: {', '.join(t.name for t in TASKS)}")
    chosen = {known[name].name for name in wanted}
    return [task for task in TASKS if task.name in chosen]


def task_manager(data_dir: str | Path | None = None, *, include_defaults: bool = False) -> Any:
    """An lm-eval TaskManager that knows the packaged tasks (and lm-eval's own if asked).

    `data_dir` makes every packaged task read `<data_dir>/<task>.jsonl` instead of the hub.
    """
    from lm_eval.tasks import TaskManager

    metadata = {"data_dir": str(data_dir)} if data_dir is not None else None
    return TaskManager(include_path=str(tasks_dir()), include_defaults=include_defaults, metadata=metadata)


def run_cetvel(
    harness_lm: Any,
    tasks: Sequence[CetvelTask],
    *,
    limit: int | None = None,
    data_dir: str | Path | None = None,
    bootstrap_iters: int = 1000,
) -> dict[str, Any] | None:
    """Evaluate; returns per-task metrics, baselines, counts and the settings used.

    Under a launch of several processes (the model's world size > 1) lm-eval gathers the results on
    rank 0: the other processes get None and should write nothing.
    """
    from lm_eval import evaluator

    if limit is not None and limit < 1:
        raise DiffutronError(f"--limit must be >= 1, got {limit}")
    DROPPED_DOCUMENTS.clear()
    with _quiet_custom_dataset_hint():
        output = evaluator.simple_evaluate(
            model=harness_lm,
            tasks=[task.harness_name for task in tasks],
            limit=limit,
            task_manager=task_manager(data_dir),
            log_samples=True,
            bootstrap_iters=bootstrap_iters,
        )
    if output is None:
        return None
    rows = [_task_result(task, output, harness_lm) for task in tasks]
    scores = [row["score"] for row in rows]
    return {
        "tasks": rows,
        "average": sum(scores) / len(scores),
        "average_chance": sum(row["chance"] for row in rows) / len(rows),
        "average_majority": sum(row["majority"] for row in rows) / len(rows),
        "paper_average": PAPER_AVERAGE if len(rows) == len(TASKS) else None,
        "settings": {
            **harness_lm.settings(),
            "limit": limit,
            "data": str(data_dir) if data_dir is not None else "hugging face hub",
            "num_fewshot": 0,
            "bootstrap_iters": bootstrap_iters,
            "score": "acc x 100",
            "lm_eval": _lm_eval_version(),
        },
    }


def baselines(samples: Sequence[dict[str, Any]]) -> tuple[float, float]:
    """Chance (uniform guessing) and majority-class accuracy in %, over the evaluated docs."""
    if not samples:
        raise DiffutronError("no documents were evaluated")
    chance = sum(1.0 / len(sample["arguments"]) for sample in samples) / len(samples)
    golds = Counter(_gold_index(sample) for sample in samples)
    return 100 * chance, 100 * max(golds.values()) / len(samples)


def _task_result(task: CetvelTask, output: dict[str, Any], harness_lm: Any) -> dict[str, Any]:
    results = output["results"][task.harness_name]
    metrics = {
        key.split(",")[0]: value
        for key, value in results.items()
        if "," in key and not key.startswith("alias") and "_stderr" not in key
    }
    stderr = {
        key.split(",")[0].removesuffix("_stderr"): value
        for key, value in results.items()
        if "_stderr" in key and isinstance(value, int | float)
    }
    samples = output["samples"][task.harness_name]
    chance, majority = baselines(samples)
    return {
        "task": task.name,
        "title": task.title,
        "harness_task": task.harness_name,
        "n": len(samples),
        "score": 100 * metrics["acc"],
        "metrics": metrics,
        "stderr": stderr,
        "chance": chance,
        "majority": majority,
        "paper": task.paper,
        "truncated_contexts": harness_lm.truncated.get(task.harness_name, 0),
        "dropped_documents": DROPPED_DOCUMENTS.get(task.harness_name, 0),  # MNLI: pairs without gold
    }


def _gold_index(sample: dict[str, Any]) -> int:
    target = sample["target"]
    if isinstance(target, int):
        return target
    choices = [continuation.removeprefix(" ") for _, continuation in sample["arguments"]]
    return choices.index(str(target)) if str(target) in choices else -1


@contextlib.contextmanager
def _quiet_custom_dataset_hint():
    """lm-eval warns about `--metadata` for every task with a custom_dataset hook; ours need none."""
    logger = logging.getLogger("lm_eval.api.task")
    hint = _DropMessage("Custom kwargs can be passed")
    logger.addFilter(hint)
    try:
        yield
    finally:
        logger.removeFilter(hint)


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")
