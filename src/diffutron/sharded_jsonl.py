"""Answer a list of records into a JSONL file, across the processes of a torchrun / accelerate
launch, resumably.

The records are cut into batches of consecutive records; batch k goes to process k mod N. Each
process appends every finished batch to its own part file beside the output
(`OUTPUT.part-R-of-N`, flushed and synced, so a killed run keeps what it finished); once all have
finished, the first process merges the parts in input order into the output, atomically, and
removes them. With `resume`, records already in any part file (of this launch or an earlier one,
with any process count) are not answered again, and a complete output from an earlier run is kept.

Nothing is kept that cannot be verified. Each part starts with a header holding a fingerprint of
the input records and of the settings the answers depend on, so parts of a run on other input or
with other settings are refused instead of being merged into this one; a finished output has no
header, so each of its lines is checked against its input record (`answers_record`) instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from diffutron.distributed import Launch, barrier, current_launch, ensure_process_group
from diffutron.errors import DiffutronError
from diffutron.files import atomic_file

Record = dict[str, Any]
AnswerBatch = Callable[[list[Record], int], list[Record]]
"""Answers a run of consecutive input records, given the input index of its first one."""
AnswerCheck = Callable[[Record, Record], bool]
"""Whether an output record (first) is the answer to an input record (second)."""


def extends_record(answer: Record, record: Record) -> bool:
    """The default `AnswerCheck`: the answer keeps every field of its record."""
    return all(key in answer and answer[key] == value for key, value in record.items())


def input_fingerprint(records: Sequence[Record], settings: Record | None = None) -> str:
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    if settings is not None:
        digest.update(b"settings ")
        digest.update(json.dumps(settings, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


def part_path(output: Path, launch: Launch) -> Path:
    return output.with_name(f"{output.name}.part-{launch.rank}-of-{launch.world_size}")


def part_files(output: Path) -> list[Path]:
    return sorted(output.parent.glob(f"{output.name}.part-*-of-*"))


def read_parts(
    output: Path, fingerprint: str, records: Sequence[Record], answers_record: AnswerCheck = extends_record
) -> dict[int, Record]:
    """Answered records by input index, from every part file of `output`.

    Only a last line without its newline (the one being written when a run was killed) is skipped;
    any other line that is not an answer to its record is damage, and refused.
    """
    answered: dict[int, Record] = {}
    for path in part_files(output):
        data = path.read_bytes()
        complete = _decoded(path, data[: data.rfind(b"\n") + 1]).split("\n")[:-1]  # after the last newline: torn
        if not complete:
            continue  # killed before its header was complete: nothing answered in it
        if _json_or_none(complete[0]) != {"input": fingerprint, "records": len(records)}:
            raise DiffutronError(
                f"{path} holds answers for other input or other settings; delete it (and its siblings) "
                "or write to another output"
            )
        for number, line in enumerate(complete[1:], start=2):
            entry = _json_or_none(line)
            index = entry.get("index") if isinstance(entry, dict) else None
            answer = entry.get("record") if isinstance(entry, dict) else None
            if not (
                type(index) is int
                and 0 <= index < len(records)
                and isinstance(answer, dict)
                and answers_record(answer, records[index])
            ):
                raise DiffutronError(
                    f"{path} line {number} is damaged: it is not an answer to this input; delete the part "
                    "files or pass --overwrite to answer everything again"
                )
            answered[index] = answer
    return answered


def generate_sharded(
    records: Sequence[Record],
    answer_batch: AnswerBatch,
    output: str | Path,
    *,
    batch_size: int,
    resume: bool = False,
    overwrite: bool = False,
    launch: Launch | None = None,
    settings: Record | None = None,
    answers_record: AnswerCheck = extends_record,
) -> list[Record] | None:
    """Answer `records` (across the launch's processes) into `output`; the answers in input order on
    the first process, None on the others.

    `answer_batch` turns a run of consecutive input records into the same number of output
    records. `settings` (JSON) is what else the answers depend on (generation settings, model):
    parts written with other settings are refused. `answers_record` checks each kept answer
    against its record. Without `resume` or `overwrite` an existing output or leftover parts
    are an error.
    """
    launch = launch or current_launch()
    ensure_process_group(launch)
    output = Path(output)
    if batch_size < 1:
        raise DiffutronError(f"batch_size must be >= 1, got {batch_size}")
    fingerprint = input_fingerprint(records, settings)
    if output.exists() and not (resume or overwrite):
        raise DiffutronError(f"{output} already exists; pass --resume to complete it or --overwrite to replace it")
    if part_files(output) and not (resume or overwrite):
        raise DiffutronError(f"{output} has parts of an unfinished run beside it; pass --resume to continue it")
    if resume and output.exists() and not part_files(output):
        if launch.is_main:
            return _read_output(output, records, answers_record)
        return None
    barrier(launch)  # everyone has looked before anyone writes
    if overwrite and not resume and launch.is_main:
        for path in part_files(output):
            path.unlink()
    barrier(launch)
    answered = read_parts(output, fingerprint, records, answers_record) if resume else {}
    runs = list(runs_to_answer(len(records), batch_size, launch, answered))
    _answer_into_part(records, runs, answer_batch, part_path(output, launch), fingerprint)
    barrier(launch)
    if not launch.is_main:
        barrier(launch)
        return None
    try:
        return _merge(output, fingerprint, records, answers_record)
    finally:
        barrier(launch)  # the others wait for the merge, and leave with it even when it fails


def runs_to_answer(count: int, batch_size: int, launch: Launch, answered: dict[int, Record]) -> Iterator[range]:
    """This process's share of the unanswered records: its batches (batch k of `batch_size`
    consecutive records goes to process k mod N), cut around the records already answered."""
    for start in range(launch.rank * batch_size, count, launch.world_size * batch_size):
        run_start = None
        for index in range(start, min(start + batch_size, count)):
            if index in answered:
                if run_start is not None:
                    yield range(run_start, index)
                run_start = None
            elif run_start is None:
                run_start = index
        if run_start is not None:
            yield range(run_start, min(start + batch_size, count))


def _answer_into_part(
    records: Sequence[Record], runs: list[range], answer_batch: AnswerBatch, part: Path, fingerprint: str
) -> None:
    if not runs:
        return
    _cut_torn_line(part)
    new_file = not part.exists() or part.stat().st_size == 0
    with part.open("a", encoding="utf-8") as handle:
        if new_file:
            handle.write(json.dumps({"input": fingerprint, "records": len(records)}) + "\n")
        for run in runs:
            answers = answer_batch([records[index] for index in run], run.start)
            if len(answers) != len(run):
                raise DiffutronError(f"answer_batch returned {len(answers)} records for {len(run)}")
            handle.writelines(
                json.dumps({"index": index, "record": answer}, ensure_ascii=False) + "\n"
                for index, answer in zip(run, answers)
            )
            handle.flush()
            os.fsync(handle.fileno())


def _cut_torn_line(part: Path) -> None:
    """Drop a last line that a killed run left half-written, so that new lines start on their own."""
    if not part.exists():
        return
    data = part.read_bytes()
    complete = data.rfind(b"\n") + 1
    if complete < len(data):
        with part.open("r+b") as handle:
            handle.truncate(complete)


def _merge(output: Path, fingerprint: str, records: Sequence[Record], answers_record: AnswerCheck) -> list[Record]:
    answered = read_parts(output, fingerprint, records, answers_record)
    missing = [index for index in range(len(records)) if index not in answered]
    if missing:
        raise DiffutronError(
            f"{len(missing)} record(s) were not answered (first: {missing[0]}); run again with --resume"
        )
    results = [answered[index] for index in range(len(records))]
    with atomic_file(output) as handle:
        handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in results)
    for path in part_files(output):
        path.unlink()
    return results


def _read_output(output: Path, records: Sequence[Record], answers_record: AnswerCheck) -> list[Record]:
    """The answers of a finished output, each checked against its record: kept only when verified."""
    text = _decoded(output, output.read_bytes())
    lines = [(number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if len(lines) != len(records):
        raise DiffutronError(
            f"{output} holds {len(lines)} answers for {len(records)} records; pass --overwrite to answer them again"
        )
    results = []
    for (number, line), record in zip(lines, records):
        answer = _json_or_none(line)
        if not isinstance(answer, dict):
            problem = "is not a JSON object"
        elif not answers_record(answer, record):
            problem = f"is not the answer to input record {len(results) + 1} with these settings"
        else:
            results.append(answer)
            continue
        raise DiffutronError(f"{output} line {number} {problem}; pass --overwrite to answer them again")
    return results


def _decoded(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DiffutronError(f"{path} is not UTF-8 text, so not an output of this run; pass --overwrite") from None


def _json_or_none(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None
