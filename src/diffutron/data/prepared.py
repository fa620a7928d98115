"""Prepared datasets on disk: `datasets.Dataset.save_to_disk` output plus a `manifest.json`.

Both are written inside `atomic_directory`, so a crash never leaves a directory that looks complete;
the manifest is written last. Rows are built through an Arrow cache in a scratch directory beside
the output (same disk), so corpora far larger than memory work. The manifest records the tokenizer
(name and a fingerprint of its vocabulary), so training with another tokenizer is refused; loading
checks that every Arrow shard is whole and that the row count is the manifest's.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from diffutron.model.tokens import tokenizer_fingerprint, tokenizer_name
from diffutron.errors import DiffutronError
from diffutron.files import read_json_object, atomic_directory, check_destination

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
ARROW_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # the last 8 bytes of every whole Arrow stream file


def check_outputs(outputs: Iterable[Path | None], sources: Iterable[Any], tokenizer: str, *, overwrite: bool) -> None:
    """Before any work: each output may be written and deletes no input (a source file, the tokenizer)."""
    wanted = [output for output in outputs if output is not None]
    if len({output.resolve() for output in wanted}) < len(wanted):
        raise DiffutronError(f"the outputs {', '.join(map(str, wanted))} must be different directories")
    inputs = [*(source.path for source in sources), tokenizer]
    for output in wanted:
        check_destination(output, overwrite=overwrite, inputs=inputs)


@contextlib.contextmanager
def scratch_directory(output: Path) -> Iterator[Path]:
    """A temporary directory beside `output` for Arrow caches, removed afterwards whatever happens."""
    output.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.scratch."))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def datasets_quiet() -> Iterator[None]:
    """Silence the `datasets` progress bars while ours are shown."""
    from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def materialize(rows: Iterable[dict[str, Any]], features: Any, scratch: Path) -> Any:
    """A memory-mapped `datasets.Dataset` holding all `rows` (streamed into an Arrow file in `scratch`)."""
    from datasets import Dataset

    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:  # the generator builder cannot make an empty dataset
        return Dataset.from_dict({name: [] for name in features}, features=features)
    # an explicit fingerprint: hashing the generator would pickle the tokenizer it closes over
    return Dataset.from_generator(
        lambda: itertools.chain([first], iterator),
        features=features,
        cache_dir=str(scratch),
        fingerprint=uuid.uuid4().hex,
    )


def write_prepared(
    dataset: Any, output: Path, manifest: dict[str, Any], *, overwrite: bool, max_shard_size: str | int = "500MB"
) -> Path:
    """Write the dataset shards and then the manifest; the directory appears only when both are done."""
    with atomic_directory(output, overwrite=overwrite) as temporary:
        dataset.save_to_disk(str(temporary), max_shard_size=max_shard_size)
        text = json.dumps({"format_version": FORMAT_VERSION, **manifest}, indent=2, ensure_ascii=False)
        (temporary / MANIFEST).write_text(text + "\n", encoding="utf-8")
    return output


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        raise DiffutronError(
            f"{path} is not a prepared dataset (no {MANIFEST}); build one with "
            "`diffutron data pretrain` or `diffutron data sft`"
        )
    return read_json_object(file, "build the data again")


def check_tokenizer(path: str | Path, tokenizer: Any, key: str = "data") -> None:
    """Refuse data whose manifest records a tokenizer with another vocabulary than `tokenizer`'s."""
    manifest = read_manifest(path)
    recorded = manifest.get("tokenizer_fingerprint")
    if recorded is not None and recorded != tokenizer_fingerprint(tokenizer):
        raise DiffutronError(
            f"{key}: {path} was built with the tokenizer {manifest.get('tokenizer')!r}, whose vocabulary differs "
            f"from that of the tokenizer used here ({tokenizer_name(tokenizer)}), so its token ids would mean other "
            "tokens; build the data again with this tokenizer, or use the tokenizer it was built with"
        )


def load_prepared(path: str | Path, kind: str | None = None) -> Any:
    """The `datasets.Dataset` of a prepared directory; `kind` ("pretrain"/"sft") is checked when given.

    A missing or truncated shard, or a row count other than the manifest's, is an error naming the problem.
    """
    from datasets import Dataset, load_from_disk

    manifest = read_manifest(path)
    if kind is not None and manifest.get("kind") != kind:
        raise DiffutronError(f"{path} holds {manifest.get('kind')!r} data, but {kind!r} data is needed here")
    _check_shards(Path(path))
    try:
        dataset = load_from_disk(str(path))
    except Exception as error:  # datasets and pyarrow raise many types for a damaged directory
        raise DiffutronError(f"{path} cannot be read as a prepared dataset ({error}); build it again") from None
    expected = manifest.get("statistics", {}).get("rows")
    if isinstance(dataset, Dataset) and isinstance(expected, int) and len(dataset) != expected:
        raise DiffutronError(
            f"{path} holds {len(dataset):,} rows but its {MANIFEST} records {expected:,}: a shard is missing or "
            "damaged; build the data again"
        )
    return dataset


def _check_shards(path: Path) -> None:
    """Every Arrow file a `save_to_disk` directory lists (state.json) exists and ends whole."""
    for state in [path / "state.json", *path.glob("*/state.json")]:  # a Dataset, or a DatasetDict's splits
        if not state.is_file():
            continue
        try:
            files = [entry["filename"] for entry in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DiffutronError(f"{state} cannot be read ({error}); build the data again") from None
        for name in files:
            shard = state.parent / name
            if not shard.is_file():
                raise DiffutronError(f"{shard} is missing (listed in {state}); build the data again")
            with shard.open("rb") as handle:
                handle.seek(max(0, shard.stat().st_size - len(ARROW_END_OF_STREAM)))
                if handle.read() != ARROW_END_OF_STREAM:
                    raise DiffutronError(
                        f"{shard} is truncated (it does not end an Arrow stream); build the data again"
                    )


def length_statistics(dataset: Any, column: str = "input_ids") -> dict[str, Any]:
    """Rows and token counts of a list column: total, mean, min, median, 95th percentile, max."""
    lengths = row_lengths(dataset, column)
    if lengths.size == 0:
        return {"rows": 0, "tokens": 0}
    return {
        "rows": int(lengths.size),
        "tokens": int(lengths.sum()),
        "mean": round(float(lengths.mean()), 2),
        "min": int(lengths.min()),
        "p50": int(np.percentile(lengths, 50, method="higher")),  # an observed length, not a blend
        "p95": int(np.percentile(lengths, 95, method="higher")),
        "max": int(lengths.max()),
    }


def row_lengths(dataset: Any, column: str = "input_ids") -> np.ndarray:
    """The length of every row's list in `column`."""
    return column_array(dataset, column, list_lengths=True)


def column_array(dataset: Any, column: str, *, list_lengths: bool = False) -> np.ndarray:
    """A scalar column (or the lengths of a list column) as one int64 array, read batch by batch in Arrow."""
    import pyarrow.compute as pc

    parts = []
    for batch in dataset.select_columns([column]).with_format("arrow").iter(batch_size=65536):
        values = pc.list_value_length(batch[column]) if list_lengths else batch[column]
        parts.append(values.to_numpy(zero_copy_only=False))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def software_versions() -> dict[str, str | None]:
    """Versions that decide the bytes of a prepared dataset, for its manifest."""
    versions: dict[str, str | None] = {}
    for package in ("diffutron", "datasets", "tokenizers", "transformers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions
