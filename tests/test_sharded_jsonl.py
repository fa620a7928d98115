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
from diffutron.sampling.sharded import generate_sharded, input_fingerprint, part_path

RECORDS = [{"prompt": text} for text in ("Merhaba", "Bugün hava nasıl?", "Çay", "Kitap okumak", "Ankara")]


def shout(batch):
    return [{**record, "answer": record["prompt"].upper()} for record in batch]


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
    asked = []
    results = generate_sharded(
        RECORDS,
        lambda b: asked.extend(r["prompt"] for r in b) or shout(b),
        output,
        batch_size=2,
        resume=True,
        launch=Launch(),
    )
    assert asked == ["Çay", "Kitap okumak", "Ankara"]
    assert results[0]["answer"] == "kept" and results[1:] == shout(RECORDS[1:])
    assert generate_sharded(RECORDS, shout, output, batch_size=2, resume=True, launch=Launch()) == results


def test_parts_of_other_input_are_refused(tmp_path):
    output = tmp_path / "out.jsonl"
    part_path(output, Launch()).write_text(json.dumps({"input": "0" * 64, "records": 5}) + "\n")
    with pytest.raises(DiffutronError, match="answers for other input"):
        generate_sharded(RECORDS, shout, output, batch_size=2, resume=True, launch=Launch())


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from diffutron.lm import Diffutron
    from diffutron.sampling.config import GenerationConfig
    from diffutron.sampling.sharded import generate_sharded

    records, output = json.loads(sys.argv[1]), sys.argv[2]
    lm = Diffutron.from_pretrained(None, device="cpu")
    config = GenerationConfig(max_new_tokens=8, steps=8, block_length=8, temperature=0.0)

    def answer(batch):
        texts = lm.generate([record["prompt"] for record in batch], config, chat=True)
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
