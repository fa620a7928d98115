"""The generation commands of the CLI: output, JSONL files, and exit status 2 on bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from diffutron import Diffutron, GenerationConfig
from diffutron.cli import app
from diffutron.model.chat import render_chat
from helpers.answers import reference_answers

FAST = ["--max-new-tokens", "6", "--steps", "6", "--block-length", "3", "--temperature", "0"]
FAST_CONFIG = GenerationConfig(max_new_tokens=6, steps=6, block_length=3, temperature=0.0)


@pytest.fixture(scope="module")
def run(tiny_checkpoint):
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, [*args, "--model", str(tiny_checkpoint)], input=input)

    return invoke


def test_info(run):
    result = run("info")
    assert result.exit_code == 0, result.output
    assert "context length" in result.output and "512" in result.output


@pytest.fixture(scope="module")
def expected(tiny_checkpoint):
    """The reference sampler's answers to chat prompts, with the settings of FAST."""
    lm = Diffutron.from_pretrained(tiny_checkpoint)
    return lambda *questions: reference_answers(
        lm.model, lm.tokenizer, [lm.encode(render_chat(q)) for q in questions], FAST_CONFIG
    )


def test_generate_from_arguments(run, expected):
    result = run("generate", "Kitap ne demek?", *FAST)
    assert result.exit_code == 0, result.output
    answer = expected("Kitap ne demek?")[0]
    assert answer and result.output.split() == answer.split()


def test_generate_jsonl(run, tmp_path, expected):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"prompt": "Kitap ne demek?", "id": 1}\n\n{"prompt": "Çay?"}\n', encoding="utf-8")
    result = run("generate", "--input", str(source), "--output", str(target), *FAST)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [r["prompt"] for r in records] == ["Kitap ne demek?", "Çay?"]
    assert records[0]["id"] == 1
    assert [r["answer"] for r in records] == expected("Kitap ne demek?", "Çay?")
    assert records[0]["settings"]["steps"] == 6 and records[0]["settings"]["temperature"] == 0.0


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (b'{"prompt": "a"}\n{"prompt": \n', "in.jsonl:2: not valid JSON"),
        (b'{"prompt": "a"}\n\xff\xfe\n', "in.jsonl:2: not valid UTF-8"),
        (b'{"text": "a"}\n', "in.jsonl:1: expected an object"),
        (b'{"prompt": "  "}\n', "in.jsonl:1: the prompt is empty"),
        (b'{"prompt": "a"}\n{"prompt": "b \\ud800"}\n', "in.jsonl:2: the prompt is not valid Unicode: character 3"),
        (b"\n\n", "has no prompts"),
    ],
)
def test_bad_jsonl_leaves_no_output(run, tmp_path, content, complaint):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(content)
    result = run("generate", "--input", str(source), "--output", str(target), *FAST)
    assert result.exit_code == 2
    assert complaint in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not target.exists() and list(tmp_path.iterdir()) == [source]


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["generate", "a", "--steps", "0"], "steps must be an integer >= 1"),
        (["generate", "a", "--remasking", "best"], "'low_confidence', 'random'"),
        (["generate", "a", "--temperature", "-1"], "temperature must be >= 0"),
        (["generate"], "give prompts as arguments or --input"),
        (["infill", "no gaps here"], "no placeholder"),
        (["generate", "a", "--max-new-tokens", "600"], "context of 512"),
        (["generate", "a", "b \udcff"], "prompt 1 is not valid Unicode: character 3 is a lone surrogate \\udcff"),
        (["infill", "\ud800 [MASK]"], "the text is not valid Unicode"),
        (["chat", "--system", "x\udcfe"], "--system is not valid Unicode: character 2"),
    ],
)
def test_usage_errors_exit_2_without_traceback(run, args, complaint):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert complaint in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_missing_model_directory_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["info", "--model", str(tmp_path / "absent")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_infill(run, tiny_checkpoint):
    result = run("infill", "Kitap [MASK:2] güzel.", *FAST)
    assert result.exit_code == 0, result.output
    filled = Diffutron.from_pretrained(tiny_checkpoint).infill("Kitap [MASK:2] güzel.", FAST_CONFIG)
    assert filled.startswith("Kitap ") and filled.endswith(" güzel.") and filled != "Kitap  güzel."
    assert result.output.rstrip("\n") == filled


def test_chat_session(run):
    result = run("chat", "--no-viz", *FAST, input="Kitap ne demek?\n\n/reset\nÇay?\n/exit\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("diffutron>") == 2
    assert "Please write a question" in result.output
    assert "Conversation cleared" in result.output


def test_bytes_that_are_not_utf8_exit_2_or_keep_the_chat(tiny_checkpoint):
    """Real processes: invalid bytes in argv and on chat's stdin reach the one Unicode check."""
    import subprocess
    import sys

    def diffutron(*args: bytes, stdin: bytes = b"") -> subprocess.CompletedProcess:
        command = [sys.executable.encode(), b"-m", b"diffutron", *args, b"--model", str(tiny_checkpoint).encode()]
        return subprocess.run(command, input=stdin, capture_output=True, timeout=300)

    argv = diffutron(b"generate", b"Kitap \xff\xfe ne?")
    assert argv.returncode == 2
    assert argv.stderr.decode().splitlines() == [
        "error: prompt 0 is not valid Unicode: character 7 is a lone surrogate \\udcff (bytes that are not UTF-8, "
        "or half of a \\u escape pair); give UTF-8 text"
    ]
    chat = diffutron(b"chat", b"--no-viz", *(word.encode() for word in FAST), stdin=b"Kitap \xff?\nKitap?\n/exit\n")
    output = " ".join(chat.stdout.decode().split())
    assert chat.returncode == 0, chat.stderr.decode()
    assert "error: your message is not valid Unicode: character 7 is a lone surrogate \\udcff" in output
    assert output.count("diffutron>") == 1  # the next message is answered in the same session


def test_generate_never_replaces_a_file_without_overwrite_and_checks_before_the_work(run, tmp_path):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"prompt": "Kitap ne demek?"}\n', encoding="utf-8")
    target.write_text("keep me\n", encoding="utf-8")
    refused = run("generate", "--input", str(source), "--output", str(target), *FAST)
    assert refused.exit_code == 2 and "already exists" in refused.output and "--overwrite" in refused.output
    assert target.read_text(encoding="utf-8") == "keep me\n"
    same = run("generate", "--input", str(source), "--output", str(source), "--overwrite", *FAST)
    assert same.exit_code == 2 and "would delete it" in same.output
    assert source.read_text(encoding="utf-8") == '{"prompt": "Kitap ne demek?"}\n'
    directory = run("generate", "Kitap?", "--output", str(tmp_path), *FAST)
    assert directory.exit_code == 2 and "is a directory" in directory.output
    replaced = run("generate", "--input", str(source), "--output", str(target), "--overwrite", *FAST)
    assert replaced.exit_code == 0, replaced.output
    assert json.loads(target.read_text(encoding="utf-8").splitlines()[0])["prompt"] == "Kitap ne demek?"


def test_generate_animation_has_one_frame_per_model_call(run, tmp_path):
    from PIL import Image

    target = tmp_path / "answer.gif"
    result = run("generate", "Kitap ne demek?", "--animation", str(target), "--no-early-stop", *FAST)
    assert result.exit_code == 0, result.output
    assert "wrote the animation" in result.output
    with Image.open(target) as image:
        assert image.n_frames == 6  # 6 steps, run to the end
    two = run("generate", "a", "b", "--animation", str(tmp_path / "two.gif"), *FAST)
    assert two.exit_code == 2 and "exactly one prompt" in two.output


@pytest.mark.parametrize("mode", [[], ["--raw"]], ids=["chat", "raw"])
def test_generate_with_output_and_animation_writes_both(run, tmp_path, mode):
    """The answer written beside the animation is the one the command writes without it (--raw too)."""
    output, animation = tmp_path / "out.jsonl", tmp_path / "answer.svg"
    both = run("generate", "Kitap ne demek?", *mode, "-o", str(output), "--animation", str(animation), *FAST)
    assert both.exit_code == 0, both.output
    alone = run("generate", "Kitap ne demek?", *mode, "-o", str(tmp_path / "alone.jsonl"), *FAST)
    assert alone.exit_code == 0, alone.output
    assert output.read_text(encoding="utf-8") == (tmp_path / "alone.jsonl").read_text(encoding="utf-8")
    assert animation.read_text(encoding="utf-8").startswith("<svg")
    assert f"wrote 1 answer to {output}" in " ".join(both.output.split())
    same = run("generate", "Kitap?", "-o", str(tmp_path / "a.gif"), "--animation", str(tmp_path / "a.gif"), *FAST)
    assert same.exit_code == 2 and "--output and --animation both name" in same.output


def test_generate_raw_animation_draws_the_raw_continuation(run, tiny_checkpoint, tmp_path):
    import html

    lm = Diffutron.from_pretrained(tiny_checkpoint)
    prompt = "Bugün hava"
    raw = lm.generate([prompt], FAST_CONFIG, chat=False)[0]
    assert raw != lm.chat(prompt, FAST_CONFIG)  # otherwise the check below could not tell them apart
    target = tmp_path / "raw.svg"
    result = run("generate", prompt, "--raw", "--animation", str(target), *FAST)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].strip() == raw.strip()
    assert f"<title>Diffutron: {html.escape(raw)}</title>" in target.read_text(encoding="utf-8")


def test_generate_resume_keeps_a_finished_output_only_for_its_own_prompts(run, tmp_path):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    prompts = ["Kitap ne demek?", "Çay?", "Ankara"]
    source.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
    assert run("generate", "-i", str(source), "-o", str(target), *FAST).exit_code == 0
    finished = target.read_bytes()
    assert '"prompt": "Çay?", "answer": ' in finished.decode("utf-8")  # UTF-8 text, not escapes
    kept = run("generate", "-i", str(source), "-o", str(target), "--resume", *FAST)
    assert kept.exit_code == 0 and kept.output.strip() == f"wrote 3 answers to {target}"
    assert target.read_bytes() == finished
    source.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["Kitap ne demek?", "Kahve?", "Ankara"]))
    changed = run("generate", "-i", str(source), "-o", str(target), "--resume", *FAST)
    assert changed.exit_code == 2, changed.output
    assert "line 2 is not the answer to input record 2 with these settings" in changed.output
    assert len(changed.output.strip().splitlines()) == 1 and "Traceback" not in changed.output
    assert target.read_bytes() == finished


def test_generate_under_torchrun_merges_the_parts_into_what_one_process_writes(tiny_checkpoint, tmp_path):
    import os
    import subprocess
    import sys

    source = tmp_path / "in.jsonl"
    prompts = ["Kitap ne demek?", "Çay?", "Bugün hava", "Güneş", "Ankara", "Okul"]
    source.write_text(
        "".join(json.dumps({"prompt": p, "id": i}) + "\n" for i, p in enumerate(prompts)), encoding="utf-8"
    )
    sampled = [
        *FAST[:-1],
        "0.8",
        "--seed",
        "3",
        "--batch-size",
        "2",
        "--model",
        str(tiny_checkpoint),
        "--device",
        "cpu",
    ]
    single = tmp_path / "single.jsonl"
    assert CliRunner().invoke(app, ["generate", "-i", str(source), "-o", str(single), *sampled]).exit_code == 0
    merged = tmp_path / "merged.jsonl"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "diffutron"]
    process = subprocess.run(
        [*launcher, "generate", "-i", str(source), "-o", str(merged), *sampled],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert merged.read_text(encoding="utf-8") == single.read_text(encoding="utf-8")
    assert not list(tmp_path.glob("merged.jsonl.part-*"))
