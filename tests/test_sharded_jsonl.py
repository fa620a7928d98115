"""Records answered across processes: parts per process, merged in input order, resumable."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import textwrap

import pytest

from diffutron.distributed import Launch
from diffutron.errors import DiffutronError
from diffutron.sharded_jsonl import generate_sharded, input_fingerprint, part_path, runs_to_answer

RECORDS = [{"prompt": text} for text in ("Merhaba", "Bugün hava nasıl?", "Çay", "Kitap okumak", "Ankara")]


def shout(batch, first_index=0):
    return [{**record, "answer": record["prompt"].upper()} for record in batch]


def resume(output):
    """Resume in this one process: the answers, and the prompts that had to be answered."""
    asked = []
    results = generate_sharded(
        RECORDS,
        lambda batch, _: asked.extend(record["prompt"] for record in batch) or shout(batch),
        output,
        batch_size=2,
        resume=True,
        launch=Launch(),
    )
    return results, asked


def test_single_process_writes_in_input_order(tmp_path):
    output = tmp_path / "out.jsonl"
    results = generate_sharded(RECORDS, shout, output, batch_size=2, launch=Launch())
    assert results == shout(RECORDS)
    assert [json.loads(line) for line in output.read_text().splitlines()] == results
    assert not list(tmp_path.glob("out.jsonl.part-*"))
    with pytest.raises(DiffutronError, match="already exists"):
        generate_sharded(RECORDS, shout, output, batch_size=2, launch=Launch())


def test_resume_answers_only_what_is_missing(tmp_path):
    output = tmp_path / "out.jsonl"
    # a killed two-process run: rank 1 finished record 1, rank 0 record 0 and half a line of record 2
    header = json.dumps({"input": input_fingerprint(RECORDS), "records": len(RECORDS)})
    first = json.dumps({"index": 0, "record": {"prompt": "Merhaba", "answer": "kept"}})
    part_path(output, Launch(0, 2, 0)).write_text(f'{header}\n{first}\n{{"index": 2, "rec')
    second = json.dumps({"index": 1, "record": shout(RECORDS[1:2])[0]})
    part_path(output, Launch(1, 2, 1)).write_text(f"{header}\n{second}\n")
    with pytest.raises(DiffutronError, match="unfinished run"):
        generate_sharded(RECORDS, shout, output, batch_size=2, launch=Launch())
    results, asked = resume(output)
    assert asked == ["Çay", "Kitap okumak", "Ankara"]
    assert results[0]["answer"] == "kept" and results[1:] == shout(RECORDS[1:])
    assert generate_sharded(RECORDS, shout, output, batch_size=2, resume=True, launch=Launch()) == results


def test_parts_of_other_input_are_refused(tmp_path):
    output = tmp_path / "out.jsonl"
    part_path(output, Launch()).write_text(json.dumps({"input": "0" * 64, "records": 5}) + "\n")
    with pytest.raises(DiffutronError, match="answers for other input"):
        generate_sharded(RECORDS, shout, output, batch_size=2, resume=True, launch=Launch())


def test_the_fingerprint_is_stable_and_covers_records_and_settings():
    # parts on disk carry it: the same input and settings must give the same value in every version
    assert input_fingerprint(RECORDS) == "c2b3dbb9a45837a4811ea7c120ab61e70e8d45ca71e596599ac8b3d37cc834f4"
    assert (
        input_fingerprint(RECORDS, {"seed": 1, "model": "ç"})
        == "d619da144eac816ca0c972ff60162a981b771578b5ed17802c86f0879a8b82bc"
    )
    assert input_fingerprint([{"b": 2, "a": 1}]) == input_fingerprint([{"a": 1, "b": 2}])  # key order aside
    assert input_fingerprint(RECORDS, {}) != input_fingerprint(RECORDS)


def test_parts_of_other_records_are_refused_even_where_their_answers_fit(tmp_path):
    output = tmp_path / "out.jsonl"
    other = [*RECORDS[:4], {"prompt": "İzmir"}]  # same count, the first answers fit both inputs
    header = json.dumps({"input": input_fingerprint(other), "records": len(other)})
    first = json.dumps({"index": 0, "record": shout(RECORDS[:1])[0]})
    part_path(output, Launch()).write_text(f"{header}\n{first}\n")
    with pytest.raises(DiffutronError, match="holds answers for other input or other settings"):
        resume(output)


def test_resume_with_nothing_left_answers_everything_and_batch_size_one_works(tmp_path):
    output = tmp_path / "out.jsonl"
    with pytest.raises(DiffutronError, match="batch_size must be >= 1, got 0"):
        generate_sharded(RECORDS, shout, output, batch_size=0, launch=Launch())
    assert resume(output) == (shout(RECORDS), [record["prompt"] for record in RECORDS])
    assert '"prompt": "Çay", "answer": "ÇAY"' in output.read_text(encoding="utf-8")  # UTF-8, not escapes
    output.unlink()
    assert generate_sharded(RECORDS, shout, output, batch_size=1, launch=Launch()) == shout(RECORDS)


def test_overwrite_drops_leftover_parts_unless_resuming(tmp_path):
    output = tmp_path / "out.jsonl"
    header = json.dumps({"input": input_fingerprint(RECORDS), "records": len(RECORDS)})
    kept = json.dumps({"index": 0, "record": {**RECORDS[0], "answer": "kept"}})
    leftover = part_path(output, Launch(0, 2, 0))
    leftover.write_text(f"{header}\n{kept}\n")
    both = generate_sharded(RECORDS, shout, output, batch_size=2, resume=True, overwrite=True, launch=Launch())
    assert both[0]["answer"] == "kept"  # with --resume the parts are continued, not dropped
    leftover.write_text(f"{header}\n{kept}\n")
    assert generate_sharded(RECORDS, shout, output, batch_size=2, overwrite=True, launch=Launch()) == shout(RECORDS)
    assert not leftover.exists()


def test_each_process_answers_whole_batches_around_what_is_answered():
    def runs(rank, world, answered=()):
        launch = Launch(rank, world, rank)
        return [(run.start, run.stop) for run in runs_to_answer(7, 2, launch, dict.fromkeys(answered))]

    assert runs(0, 1) == [(0, 2), (2, 4), (4, 6), (6, 7)]
    assert runs(0, 2) == [(0, 2), (4, 6)]
    assert runs(1, 2) == [(2, 4), (6, 7)]
    assert runs(0, 2, answered={1, 4}) == [(0, 1), (5, 6)]
    assert runs(1, 2, answered={2, 3, 6}) == []
    assert runs(0, 3, answered={0}) == [(1, 2), (6, 7)]


def test_each_batch_is_told_where_it_starts_in_the_input(tmp_path):
    starts = []

    def answer(batch, first_index):
        starts.append((first_index, [record["prompt"] for record in batch]))
        return shout(batch)

    output = tmp_path / "out.jsonl"
    part_path(output, Launch()).write_text(
        json.dumps({"input": input_fingerprint(RECORDS), "records": len(RECORDS)})
        + "\n"
        + json.dumps({"index": 3, "record": shout(RECORDS[3:4])[0]})
        + "\n"
    )
    assert generate_sharded(RECORDS, answer, output, batch_size=2, resume=True, launch=Launch()) == shout(RECORDS)
    assert starts == [(0, ["Merhaba", "Bugün hava nasıl?"]), (2, ["Çay"]), (4, ["Ankara"])]


@pytest.mark.parametrize(
    ("left", "asked"),
    [
        ("header and one answer, then a torn line", ["Bugün hava nasıl?", "Çay", "Kitap okumak", "Ankara"]),
        ("a torn header", [record["prompt"] for record in RECORDS]),
        ("an answer torn inside a letter", ["Bugün hava nasıl?", "Çay", "Kitap okumak", "Ankara"]),
        ("a torn line of one byte", ["Bugün hava nasıl?", "Çay", "Kitap okumak", "Ankara"]),
    ],
)
def test_a_run_killed_mid_line_is_completed_by_one_resume(tmp_path, left, asked):
    """The part this process appends to is the one the killed run left: its torn line is cut first."""
    output = tmp_path / "out.jsonl"
    header = json.dumps({"input": input_fingerprint(RECORDS), "records": len(RECORDS)})
    first = json.dumps({"index": 0, "record": shout(RECORDS[:1])[0]})
    answered = f"{header}\n{first}\n".encode()
    torn = {
        "header and one answer, then a torn line": answered + b'{"index": 1, "rec',
        "a torn header": header[:20].encode(),
        "an answer torn inside a letter": answered + '{"index": 1, "record": {"prompt": "Bugün'.encode()[:-2],
        "a torn line of one byte": answered + "Ç".encode()[:1],
    }
    part_path(output, Launch()).write_bytes(torn[left])
    results, seen = resume(output)
    assert seen == asked
    assert results == shout(RECORDS)
    assert [json.loads(line) for line in output.read_text().splitlines()] == results
    assert not list(tmp_path.glob("out.jsonl.part-*"))


def test_a_finished_output_is_kept_when_every_line_answers_its_record(tmp_path):
    output = tmp_path / "out.jsonl"
    answers = [{**record, "answer": f"{record['prompt']}\u2028\x85satır"} for record in RECORDS]
    lines = [json.dumps(answer, ensure_ascii=False) for answer in answers]
    output.write_text("\n".join([*lines[:2], " \t", *lines[2:]]) + "\n\n", encoding="utf-8")  # blank lines aside
    untouched = output.read_bytes()
    never = lambda batch, _: pytest.fail("nothing is answered again")  # noqa: E731
    assert generate_sharded(RECORDS, never, output, batch_size=2, resume=True, launch=Launch()) == answers
    assert output.read_bytes() == untouched
    swapped = [RECORDS[0], RECORDS[2], RECORDS[1], *RECORDS[3:]]
    with pytest.raises(DiffutronError, match="line 2 is not the answer to input record 2 with these settings"):
        generate_sharded(swapped, never, output, batch_size=2, resume=True, launch=Launch())


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from diffutron.lm import Diffutron
    from diffutron.sampling.config import GenerationConfig
    from diffutron.sharded_jsonl import generate_sharded

    records, output = json.loads(sys.argv[1]), sys.argv[2]
    lm = Diffutron.from_pretrained(None, device="cpu")
    config = GenerationConfig(max_new_tokens=8, steps=8, block_length=8, temperature=0.0)

    def answer(batch, first_index):
        texts = lm.generate([record["prompt"] for record in batch], config, chat=True, first_index=first_index)
        return [{**record, "answer": text} for record, text in zip(batch, texts)]

    generate_sharded(records, answer, output, batch_size=1)
    """
)


def test_two_processes_merge_to_the_single_process_file(tmp_path, monkeypatch):
    script = tmp_path / "generate.py"
    script.write_text(SCRIPT, encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        json.dumps(RECORDS),
        str(tmp_path / "two.jsonl"),
    ]
    process = subprocess.run(
        command, capture_output=True, text=True, timeout=240, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    monkeypatch.setattr(sys, "argv", ["generate.py", json.dumps(RECORDS), str(tmp_path / "one.jsonl")])
    runpy.run_path(str(script))  # the same script in this one process: a plain run
    assert (tmp_path / "two.jsonl").read_text() == (tmp_path / "one.jsonl").read_text()
    assert len((tmp_path / "one.jsonl").read_text().splitlines()) == len(RECORDS)
    assert not list(tmp_path.glob("*.part-*"))
