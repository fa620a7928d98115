"""`diffutron eval ppl | cetvel | lm-eval` through the real command line (typer runner)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from diffutron.cli import app

runner = CliRunner()


def invoke(*arguments):
    return runner.invoke(app, ["eval", *map(str, arguments)])


def said(result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_cetvel_prints_the_table_and_writes_json(tiny_checkpoint, cetvel_data_dir, tmp_path):
    output = tmp_path / "results" / "cetvel.json"
    result = invoke(
        "cetvel",
        "--model",
        tiny_checkpoint,
        "--tasks",
        "ironytr,xcopa_tr",
        "--limit",
        2,
        "--mc-num",
        4,
        "--bootstrap-iters",
        0,
        "--data-dir",
        cetvel_data_dir,
        "--output",
        output,
    )
    assert result.exit_code == 0, result.output
    for text in ("IronyTR", "XCOPA_TR", "Chance", "Majority", "Average", "Paper"):
        assert text in result.output
    report = json.loads(output.read_text(encoding="utf-8"))
    assert [row["task"] for row in report["tasks"]] == ["ironytr", "xcopa_tr"]
    assert all(row["n"] == 2 and {"acc"} <= set(row["metrics"]) for row in report["tasks"])
    settings = report["settings"]
    assert settings["limit"] == 2 and settings["mc_num"] == 4 and settings["model"] == str(tiny_checkpoint)
    assert settings["data"] == str(cetvel_data_dir) and settings["lm_eval"]
    assert not list(output.parent.glob(".*.tmp"))


def test_cetvel_bad_input(tiny_checkpoint, monkeypatch, tmp_path):
    result = invoke("cetvel", "--model", tiny_checkpoint, "--tasks", "hellaswag")
    assert result.exit_code == 2
    assert "unknown task(s) hellaswag; the tasks are: belebele_tr, exams_tr" in said(result)
    for empty in ("", " , "):
        result = invoke("cetvel", "--model", tiny_checkpoint, "--tasks", empty)
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
        assert f"the task list [{empty!r}] names no task" in said(result)

    monkeypatch.setattr("diffutron.model.loading.default_model_path", lambda: None)
    result = invoke("cetvel", "--tasks", "ironytr")
    assert result.exit_code == 2 and "no embedded default model" in said(result)

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)
    monkeypatch.delenv("DIFFUTRON_EVAL_DATA", raising=False)
    result = invoke(
        "cetvel", "--model", tiny_checkpoint, "--tasks", "mnli_tr", "--limit", 1, "--output", tmp_path / "out.json"
    )
    assert result.exit_code == 2
    assert "boun-tabi/nli_tr" in said(result) and "download" in said(result) and "--data-dir" in said(result)
    assert not (tmp_path / "out.json").exists()


def test_ppl_is_deterministic_and_reports_tokens_and_interval(tiny_checkpoint, tmp_path):
    data = tmp_path / "essays.jsonl"
    essays = [
        "Kitap okumak insanın ufkunu genişletir. Bugün hava çok güzel, parka gidelim.",
        "Öğrenciler sınavdan önce düzenli çalışmalı. İstanbul Boğazı iki kıtayı birbirine bağlar.",
        "Çay, Türk kültüründe misafirperverliğin simgesidir. Güneş doğudan doğar, batıdan batar.",
    ]
    data.write_text("".join(json.dumps({"text": e}, ensure_ascii=False) + "\n" for e in essays * 2), encoding="utf-8")
    outputs = []
    for batch_size in (2, 5):
        output = tmp_path / f"ppl-{batch_size}.json"
        result = invoke(
            "ppl",
            "--model",
            tiny_checkpoint,
            "--data",
            data,
            "--seed",
            3,
            "--max-length",
            64,
            "--batch-size",
            batch_size,
            "--output",
            output,
        )
        assert result.exit_code == 0, result.output
        assert "perplexity" in result.output and "tokens scored" in result.output
        outputs.append(json.loads(output.read_text(encoding="utf-8")))
    first, second = outputs
    assert first["perplexity"] == pytest.approx(second["perplexity"], rel=1e-6)
    assert first["tokens"] == second["tokens"] > 0 and first["documents"] == 6
    assert first["interval"][0] <= first["perplexity"] <= first["interval"][1]
    assert first["settings"]["mlm_probability"] == 0.15 and first["settings"]["seed"] == 3


def test_ppl_bad_input(tiny_checkpoint, tmp_path, monkeypatch):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    result = invoke("ppl", "--model", tiny_checkpoint, "--data", empty)
    assert result.exit_code == 2 and "no text to evaluate on" in said(result)
    result = invoke("ppl", "--model", tiny_checkpoint, "--data", tmp_path / "missing.txt")
    assert result.exit_code == 2 and "does not exist" in said(result)
    text = tmp_path / "one.txt"
    text.write_text("Bugün hava çok güzel.\n", encoding="utf-8")
    result = invoke("ppl", "--model", tiny_checkpoint, "--data", text, "--max-length", 4096)
    assert result.exit_code == 2 and "exceeds the model's context of 512" in said(result)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)
    result = invoke("ppl", "--model", tiny_checkpoint, "--data", "someone/turkish-essays")
    assert result.exit_code == 2
    assert "someone/turkish-essays" in said(result) and "huggingface-cli download" in said(result)


def test_lm_eval_cli_runs_with_the_model_and_packaged_tasks(tiny_checkpoint, cetvel_data_dir):
    metadata = json.dumps({"data_dir": str(cetvel_data_dir)})
    result = invoke(
        "lm-eval",
        "--model",
        "diffutron",
        "--model_args",
        f"pretrained={tiny_checkpoint},mc_num=2",
        "--tasks",
        "diffutron_xcopa_tr",
        "--limit",
        2,
        "--metadata",
        metadata,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    assert "diffutron_xcopa_tr" in result.output and "acc" in result.output


def test_ppl_defaults_to_the_model_context(tmp_path):
    text = tmp_path / "one.txt"
    text.write_text("Bugün hava çok güzel.\n\nÇocuklar bahçede top oynuyor.\n", encoding="utf-8")
    output = tmp_path / "ppl.json"
    result = invoke("ppl", "--data", text, "--bootstrap", 0, "--device", "cpu", "--output", output)  # embedded model
    assert result.exit_code == 0, result.output
    assert json.loads(output.read_text(encoding="utf-8"))["settings"]["max_length"] == 256
