"""Answer a list of records across the processes of a torchrun / accelerate launch, resumably.

Record i goes to process i mod N. Each process appends every finished batch to its own part file
beside the output (`OUTPUT.part-R-of-N`, flushed and synced, so a killed run keeps what it
finished); once all have finished, the first process merges the parts in input order into the
output, atomically, and removes them. With `resume`, records already in any part file (of this
launch or an earlier one, with any process count) are not answered again, and a complete output
from an earlier run is kept as it is.

Each part starts with a header holding a fingerprint of the input records, so parts left by a run
on other input are refused instead of being merged into this one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from diffutron.distributed import Launch, barrier, current_launch, ensure_process_group
from diffutron.errors import DiffutronError
from diffutron.files import atomic_file

Record = dict[str, Any]
AnswerBatch = Callable[[list[Record]], list[Record]]


def input_fingerprint(records: Sequence[Record]) -> str:
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def part_path(output: Path, launch: Launch) -> Path:
    return output.with_name(f"{output.name}.part-{launch.rank}-of-{launch.world_size}")


def part_files(output: Path) -> list[Path]:
    return sorted(output.parent.glob(f"{output.name}.part-*-of-*"))


def read_parts(output: Path, fingerprint: str, count: int) -> dict[int, Record]:
    """Answered records by input index, from every part file of `output` (a torn last line is skipped)."""
    answered: dict[int, Record] = {}
    for path in part_files(output):
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines:
            continue
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError:
            continue  # killed before its header was complete: nothing answered in it
        if header.get("input") != fingerprint or header.get("records") != count:
            raise DiffutronError(
                f"{path} holds answers for other input; delete it (and its siblings) or write to another output"
            )
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                break  # the line being written when the run was killed
            answered[int(entry["index"])] = entry["record"]
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
) -> list[Record] | None:
    """Answer `records` (across the launch's processes) into `output`; the answers in input order on
    the first process, None on the others.

    `answer_batch` turns a batch of input records into the same number of output records (the
    caller's generation settings live there). Without `resume` or `overwrite` an existing output or
    leftover parts are an error.
    """
    launch = launch or current_launch()
    ensure_process_group(launch)
    output = Path(output)
    if batch_size < 1:
        raise DiffutronError(f"batch_size must be >= 1, got {batch_size}")
    fingerprint = input_fingerprint(records)
    if output.exists() and not (resume or overwrite):
        raise DiffutronError(f"{output} already exists; pass --resume to complete it or --overwrite to replace it")
    if part_files(output) and not (resume or overwrite):
        raise DiffutronError(f"{output} has parts of an unfinished run beside it; pass --resume to continue it")
    if resume and output.exists() and not part_files(output):
        if launch.is_main:
            return _read_output(output, len(records))
        return None
    barrier(launch)  # everyone has looked before anyone writes
    if overwrite and not resume and launch.is_main:
        for path in part_files(output):
            path.unlink()
    barrier(launch)
    answered = read_parts(output, fingerprint, len(records)) if resume else {}
    mine = [index for index in range(launch.rank, len(records), launch.world_size) if index not in answered]
    _answer_into_part(records, mine, answer_batch, part_path(output, launch), fingerprint, batch_size)
    barrier(launch)
    if not launch.is_main:
        barrier(launch)
        return None
    try:
        return _merge(output, fingerprint, len(records))
    finally:
        barrier(launch)  # the others wait for the merge, and leave with it even when it fails


def _answer_into_part(
    records: Sequence[Record],
    indices: list[int],
    answer_batch: AnswerBatch,
    part: Path,
    fingerprint: str,
    batch_size: int,
) -> None:
    if not indices:
        return
    new_file = not part.exists() or part.stat().st_size == 0
    with part.open("a", encoding="utf-8") as handle:
        if new_file:
            handle.write(json.dumps({"input": fingerprint, "records": len(records)}) + "\n")
        for start in range(0, len(indices), batch_size):
            batch = indices[start : start + batch_size]
            answers = answer_batch([records[index] for index in batch])
            if len(answers) != len(batch):
                raise DiffutronError(f"answer_batch returned {len(answers)} records for {len(batch)}")
            handle.writelines(
                json.dumps({"index": index, "record": answer}, ensure_ascii=False) + "\n"
                for index, answer in zip(batch, answers)
            )
            handle.flush()
            os.fsync(handle.fileno())


def _merge(output: Path, fingerprint: str, count: int) -> list[Record]:
    answered = read_parts(output, fingerprint, count)
    missing = [index for index in range(count) if index not in answered]
    if missing:
        raise DiffutronError(
            f"{len(missing)} record(s) were not answered (first: {missing[0]}); run again with --resume"
        )
    results = [answered[index] for index in range(count)]
    with atomic_file(output) as handle:
        handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in results)
    for path in part_files(output):
        path.unlink()
    return results


def _read_output(output: Path, count: int) -> list[Record]:
    lines = [line for line in output.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) != count:
        raise DiffutronError(
            f"{output} holds {len(lines)} answers for {count} records; pass --overwrite to answer them again"
        )
    return [json.loads(line) for line in lines]
