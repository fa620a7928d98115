"""Per-step training log as JSON lines in RUN_DIR/log.jsonl (what `diffutron plot-loss` reads), and the
guard that ends a run whose loss is no longer a number."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from diffutron.errors import DiffutronError
from diffutron.files import atomic_file

logger = logging.getLogger(__name__)

LOG_NAME = "log.jsonl"
_FIELDS = ("loss", "learning_rate", "grad_norm", "eval_loss")


def read_log(path: str | Path, *, allow_torn_last_line: bool = False) -> list[dict[str, Any]]:
    """The records of a log.jsonl (none if it does not exist); a malformed line is an error naming it.

    `allow_torn_last_line`: a last line cut short (a run killed while appending it) is dropped with a
    warning instead, as resuming does.
    """
    path = Path(path)
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DiffutronError(f"cannot read the training log {path}: {error}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(_record(line))
        except ValueError as error:
            if allow_torn_last_line and number == len(lines):
                logger.warning("%s, line %d is cut short (%s); dropped", path, number, error)
                continue
            raise DiffutronError(f"{path}, line {number}: {error}; fix or delete that line") from None
    return records


def _record(line: str) -> dict[str, Any]:
    """One log line as a record: a JSON object whose step is a whole number and whose values are numbers."""
    record = json.loads(line)  # json.JSONDecodeError is a ValueError
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {line.strip()[:80]!r}")
    step = record.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int):
        raise ValueError(f"step must be a whole number, got {step!r}")
    for key in _FIELDS:
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{key} must be a number, got {value!r}")
    return record


class JsonlLogger(TrainerCallback):
    """One record per logging step: step, epoch, loss, learning_rate, grad_norm, tokens_per_second.

    tokens_per_second counts non-padding input tokens since the previous record. On resume,
    records past the checkpoint's step (steps that are about to be redone) are dropped first.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._last_time = 0.0
        self._last_tokens = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:
            records = read_log(self.path, allow_torn_last_line=True)
            kept = [record for record in records if record.get("step", 0) <= state.global_step]
            with atomic_file(self.path) as handle:
                handle.writelines(json.dumps(record) + "\n" for record in kept)
        self._last_time = time.perf_counter()
        self._last_tokens = state.num_input_tokens_seen

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs or not any(key in logs for key in _FIELDS):
            return
        now, tokens = time.perf_counter(), state.num_input_tokens_seen
        record: dict[str, Any] = {"step": state.global_step, "epoch": state.epoch}
        record.update({key: float(logs[key]) for key in _FIELDS if key in logs})
        if "loss" in logs:
            elapsed = now - self._last_time
            record["tokens_per_second"] = (tokens - self._last_tokens) / elapsed if elapsed > 0 else None
            record["tokens"] = tokens
            self._last_time, self._last_tokens = now, tokens
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


class StopOnNonFiniteLoss(TrainerCallback):
    """End the run with an error when the logged training loss is NaN or infinite.

    The Trainer would otherwise train on to a model of NaN weights and exit as if all went well.
    Every process sees the same (averaged) logged loss, so all of them stop together.
    """

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise DiffutronError(
                f"the training loss is {loss} at step {state.global_step}: the run diverged and was stopped "
                f"(optimizer.lr {args.learning_rate:g}); lower the learning rate or check the data. "
                "Checkpoints saved before this step are kept."
            )
