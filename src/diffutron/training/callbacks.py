"""Per-step training log as JSON lines in RUN_DIR/log.jsonl (what `diffutron plot-loss` reads)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from diffutron.files import atomic_file

LOG_NAME = "log.jsonl"
_FIELDS = ("loss", "learning_rate", "grad_norm", "eval_loss")


def read_log(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


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
            kept = [record for record in read_log(self.path) if record.get("step", 0) <= state.global_step]
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
