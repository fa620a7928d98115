"""Where evaluation data comes from: local files, or the Hugging Face hub with offline-aware errors.

Benchmarks are pinned to hub dataset ids, but machines without internet are common, so every
loader also reads local files (the CETVEL tasks: JSONL in the hub dataset's own schema). The
readers and the hub loader are the data package's, so errors read the same everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diffutron.data.hub import load_hub_dataset
from diffutron.data.readers import iter_jsonl, iter_local_texts, require_columns, text_value
from diffutron.errors import DiffutronError
from diffutron.files import is_local_path

# a directory holding `<task>.jsonl` files that replace the hub datasets of the CETVEL tasks
DATA_DIR_ENV = "DIFFUTRON_EVAL_DATA"


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
        try:
            return {hf_split: load_hub_dataset(hf_dataset, hf_config, hf_split, streaming=False)}
        except DiffutronError as error:
            raise DiffutronError(
                f"{error}. Or give the evaluation a directory with {local_file} (JSONL rows in the "
                f"schema of {hf_dataset}): --data-dir DIR, or DIFFUTRON_EVAL_DATA=DIR"
            ) from None
    path = Path(directory) / local_file
    if not path.is_file():
        raise DiffutronError(
            f"{path} does not exist: the local data directory needs one JSONL file per task, in the "
            f"schema of {hf_dataset} (e.g. datasets.load_dataset(...).to_json({local_file!r}))"
        )
    rows = [record for _, record in iter_jsonl(path)]
    if not rows:
        raise DiffutronError(f"{path} is empty: it has no JSON records")
    return {hf_split: datasets.Dataset.from_list(rows)}


def load_documents(source: str, *, text_field: str = "text", split: str = "test") -> list[str]:
    """Non-empty texts of a local file (.txt: blank-line-separated paragraphs; .jsonl, .json,
    .parquet: `text_field` of each record) or of a hub dataset's `split`."""
    path = Path(source).expanduser()
    if is_local_path(source):
        if not path.is_file():
            raise DiffutronError(f"data file {source!r} does not exist or is not a file")
        texts = [text for _, text in iter_local_texts(path, text_field)]
    else:
        try:
            dataset = load_hub_dataset(source, None, split, streaming=False)
        except DiffutronError as error:
            raise DiffutronError(f"{error} (here: give the file with --data)") from None
        require_columns(dataset.column_names, [text_field], f"{source} (choose the column with --text-field)")
        texts = [text_value(row, text_field, f"{source} row {n}") for n, row in enumerate(dataset)]
    documents = [text for text in texts if text.strip()]
    if not documents:
        raise DiffutronError(f"{source} has no text to evaluate on (empty, or only blank {text_field!r} values)")
    return documents
