"""Where evaluation data comes from: local files, or the Hugging Face hub with offline-aware errors.

Benchmarks are pinned to hub dataset ids, but machines without internet are common, so
every loader also reads local JSONL files in the dataset's own schema, and a hub failure
says which dataset was wanted and how to bring it onto the machine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diffutron.errors import DiffutronError

# a directory holding `<task>.jsonl` files that replace the hub datasets of the CETVEL tasks
DATA_DIR_ENV = "DIFFUTRON_EVAL_DATA"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; an empty file or a broken line is an error naming the line."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DiffutronError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise DiffutronError(f"{path}, line {number}: expected a JSON object, got {record!r:.60}")
            records.append(record)
    if not records:
        raise DiffutronError(f"{path} is empty: it has no JSON records")
    return records


def load_hub_split(dataset: str, config: str | None, split: str | None) -> Any:
    """`datasets.load_dataset`, turning 'unreachable' into a message that says what to do."""
    import datasets

    try:
        return datasets.load_dataset(dataset, config, split=split)
    except (OSError, ValueError) as error:
        where = dataset + (f" (config {config})" if config else "") + (f", split {split}" if split else "")
        call = ", ".join(repr(part) for part in (dataset, config) if part)
        call += f", split={split!r}" if split else ""
        raise DiffutronError(
            f"could not load the dataset {where}: {error}. If this machine is offline, pre-download "
            f"it on a connected one (`python -c \"import datasets; datasets.load_dataset({call})\"`), "
            "copy the Hugging Face cache (HF_HOME) here and set HF_DATASETS_OFFLINE=1, or export it "
            "to JSONL and point the evaluation at local files (see docs/evaluation.md)"
        ) from error


def cetvel_split(
    *,
    hf_dataset: str,
    hf_split: str,
    local_file: str,
    hf_config: str | None = None,
    data_dir: str | None = None,
    **_task_metadata: Any,
) -> Mapping[str, Any]:
    """lm-eval `custom_dataset` hook of the packaged CETVEL tasks: {split: rows}.

    lm-eval calls it with the task's `dataset_kwargs` plus the run's metadata (hence the
    ignored keyword arguments). With `data_dir` (task-manager metadata) or the
    DIFFUTRON_EVAL_DATA variable, rows come from `<dir>/<local_file>` (JSONL in the hub
    dataset's schema); otherwise from the hub.
    """
    import datasets

    directory = data_dir or os.environ.get(DATA_DIR_ENV)
    if not directory:
        return {hf_split: load_hub_split(hf_dataset, hf_config, hf_split)}
    path = Path(directory) / local_file
    if not path.is_file():
        raise DiffutronError(
            f"{path} does not exist: the local data directory needs one JSONL file per task, in the "
            f"schema of {hf_dataset} (export it with datasets.load_dataset(...).to_json({local_file!r}))"
        )
    return {hf_split: datasets.Dataset.from_list(read_jsonl(path))}


def load_documents(source: str, *, text_field: str = "text", split: str | None = None) -> list[str]:
    """Non-empty texts of a local file (.jsonl: `text_field` of each record; otherwise one
    document per non-empty line) or of a hub dataset (`split`, default its test split)."""
    path = Path(source).expanduser()
    if path.is_dir():
        raise DiffutronError(f"{source} is a directory; give a .jsonl or text file")
    if path.is_file():
        if path.suffix == ".jsonl":
            records = read_jsonl(path)
            texts = [_field(record, text_field, f"{path}, record {n}") for n, record in enumerate(records, 1)]
        else:
            texts = path.read_text(encoding="utf-8").splitlines()
    elif source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise DiffutronError(f"data file {source!r} does not exist")
    else:
        texts = _hub_texts(source, text_field, split)
    documents = [text for text in texts if text.strip()]
    if not documents:
        raise DiffutronError(f"{source} has no text to evaluate on (empty, or only blank {text_field!r} values)")
    return documents


def _hub_texts(dataset: str, text_field: str, split: str | None) -> list[str]:
    loaded = load_hub_split(dataset, None, split)
    if split is None:
        splits = list(loaded)
        if "test" not in splits and len(splits) != 1:
            raise DiffutronError(f"{dataset} has splits {', '.join(splits)}: choose one with --split")
        loaded = loaded["test" if "test" in splits else splits[0]]
    if text_field not in loaded.column_names:
        raise DiffutronError(
            f"{dataset} has no column {text_field!r}; its columns are {', '.join(loaded.column_names)} "
            "(choose one with --text-field)"
        )
    return [text or "" for text in loaded[text_field]]


def _field(record: Mapping[str, Any], name: str, where: str) -> str:
    if name not in record:
        raise DiffutronError(f"{where} has no {name!r} field (fields: {', '.join(record)}); use --text-field")
    value = record[name]
    if not isinstance(value, str):
        raise DiffutronError(f"{where}: {name!r} must be text, got {type(value).__name__}")
    return value
