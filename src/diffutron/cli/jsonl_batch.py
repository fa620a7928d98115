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
from diffutron.sampling.structured import ResponseFormat


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
    response_format: ResponseFormat | None = None,
) -> list[dict[str, Any]]:
    """Answer every record in batches; the output file appears only once all are done."""
    results: list[dict[str, Any]] = []
    settings = answer_settings(lm, config, chat, response_format)
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
            prompts = [record["prompt"] for record in batch]
            answers = lm.generate(prompts, config, chat=chat, first_index=start, response_format=response_format)
            results.extend(answer_record(record, answer, settings) for record, answer in zip(batch, answers))
            progress.advance(task, len(batch))
    if output is not None:
        write_answers(output, results)
    return results


def answer_settings(
    lm: Diffutron, config: GenerationConfig, chat: bool, response_format: ResponseFormat | None = None
) -> dict[str, Any]:
    """What an answer depends on besides its prompt: recorded with it, and checked on --resume
    (a structured answer's schema too; {"type": "json_object"} records as null)."""
    settings = {**config.to_dict(), "chat": chat, "model": lm.info()["model"]}
    if response_format is not None:
        settings["json_schema"] = response_format.schema
    return settings


def answer_record(record: dict[str, Any], answer: str, settings: dict[str, Any]) -> dict[str, Any]:
    """An output line: the input record, its answer, and the settings it was made with."""
    return {**record, "answer": answer, "settings": settings}


def is_answer_to(line: dict[str, Any], record: dict[str, Any], settings: dict[str, Any]) -> bool:
    """Whether an output line is the answer to `record` made with `settings` (compared as JSON)."""
    answer = line.get("answer")
    return isinstance(answer, str) and line == json.loads(json.dumps(answer_record(record, answer, settings)))


def write_answers(output: Path, results: list[dict[str, Any]]) -> None:
    """The answer records as JSONL, in place at once (atomically)."""
    with atomic_file(output) as handle:
        for record in results:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


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
    response_format: ResponseFormat | None = None,
) -> list[dict[str, Any]] | None:
    """`generate_jsonl` across the processes of a torchrun / accelerate launch (or resumably in one):
    each answer is the one a single process gives (every record keeps its own random stream); the
    answers in input order on the first process, None on the others. What --resume keeps is checked
    against the records and these settings."""
    from diffutron.sharded_jsonl import generate_sharded

    settings = answer_settings(lm, config, chat, response_format)

    def answer_batch(batch: list[dict[str, Any]], first_index: int) -> list[dict[str, Any]]:
        prompts = [record["prompt"] for record in batch]
        answers = lm.generate(prompts, config, chat=chat, first_index=first_index, response_format=response_format)
        return [answer_record(record, answer, settings) for record, answer in zip(batch, answers)]

    return generate_sharded(
        records,
        answer_batch,
        output,
        batch_size=batch_size,
        resume=resume,
        overwrite=overwrite,
        settings=settings,
        answers_record=lambda line, record: is_answer_to(line, record, settings),
    )
