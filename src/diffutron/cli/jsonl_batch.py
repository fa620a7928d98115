"""Batch generation from and to JSONL files, for `diffutron generate --input/--output`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from diffutron.data.readers import iter_jsonl
from diffutron.errors import DiffutronError
from diffutron.files import atomic_file
from diffutron.lm import Diffutron
from diffutron.model.tokens import check_unicode
from diffutron.sampling.config import GenerationConfig


def read_prompts(path: Path) -> list[dict[str, Any]]:
    """Records with a non-empty "prompt" string, one JSON object per line (blank lines skipped)."""
    records = []
    for location, record in iter_jsonl(path):
        if not isinstance(record.get("prompt"), str):
            raise DiffutronError(f'{location}: expected an object like {{"prompt": "..."}}')
        if not record["prompt"].strip():
            raise DiffutronError(f"{location}: the prompt is empty")
        check_unicode(record["prompt"], f"{location}: the prompt")
        records.append(record)
    if not records:
        raise DiffutronError(f"{path} has no prompts")
    return records


def generate_jsonl(
    lm: Diffutron,
    records: list[dict[str, Any]],
    config: GenerationConfig,
    *,
    chat: bool,
    batch_size: int,
    output: Path | None,
) -> list[dict[str, Any]]:
    """Answer every record in batches; the output file appears only once all are done."""
    results: list[dict[str, Any]] = []
    settings = answer_settings(lm, config, chat)
    progress = Progress(
        TextColumn("generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        disable=len(records) <= batch_size,
    )
    with progress:
        task = progress.add_task("generate", total=len(records))
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            answers = lm.generate([record["prompt"] for record in batch], config, chat=chat, first_index=start)
            results.extend({**record, "answer": answer, "settings": settings} for record, answer in zip(batch, answers))
            progress.advance(task, len(batch))
    if output is not None:
        write_answers(output, results)
    return results


def answer_settings(lm: Diffutron, config: GenerationConfig, chat: bool) -> dict[str, Any]:
    """What every answer record says it was generated with."""
    return {**config.to_dict(), "chat": chat, "model": lm.info()["model"]}


def write_answers(output: Path, results: list[dict[str, Any]]) -> None:
    """The answer records as JSONL, in place at once (atomically)."""
    with atomic_file(output) as handle:
        for record in results:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


POSITION = "_position"  # a record's place in the input, carried through a sharded run


def generate_jsonl_sharded(
    lm: Diffutron,
    records: list[dict[str, Any]],
    config: GenerationConfig,
    *,
    chat: bool,
    batch_size: int,
    output: Path,
    resume: bool,
    overwrite: bool,
) -> list[dict[str, Any]] | None:
    """`generate_jsonl` across the processes of a torchrun / accelerate launch (or resumably in one):
    each answer is the one a single process gives (every record keeps its own random stream); the
    answers in input order on the first process, None on the others."""
    from diffutron.sampling.sharded import generate_sharded

    settings = answer_settings(lm, config, chat)

    def answer_batch(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        positions = [record[POSITION] for record in batch]
        answers = lm.generate([record["prompt"] for record in batch], config, chat=chat, positions=positions)
        return [
            {**{key: value for key, value in record.items() if key != POSITION}, "answer": answer, "settings": settings}
            for record, answer in zip(batch, answers)
        ]

    indexed = [{**record, POSITION: index} for index, record in enumerate(records)]
    return generate_sharded(indexed, answer_batch, output, batch_size=batch_size, resume=resume, overwrite=overwrite)
