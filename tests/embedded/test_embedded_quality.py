"""The embedded model's quality figures: unigram baseline and definition chrF (functions and CLI)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from diffutron.cli import app
from diffutron.embedded.definitions import chrf, definition_scores, read_questions
from diffutron.embedded.unigram import token_log_probabilities, unigram_perplexity
from diffutron.errors import DiffutronError
from diffutron.eval.perplexity import masked_sequences
from diffutron.sampling.config import GenerationConfig
from helpers.tiny import TURKISH_TEXT

TRAIN = [line for line in TURKISH_TEXT.splitlines() if line.strip()]
HELDOUT = ["Kitap okumak güzeldir. Çay içelim, parka gidelim.", "Güneş doğudan doğar; çocuklar bahçede oynar."] * 3
runner = CliRunner()


def test_unigram_matches_a_direct_computation_at_the_ppl_positions(tiny_tokenizer):
    result = unigram_perplexity(tiny_tokenizer, TRAIN, HELDOUT, mlm_probability=0.3, max_length=16, seed=4)
    counts = [1.0] * len(tiny_tokenizer)
    for text in TRAIN:
        for index in tiny_tokenizer(text, add_special_tokens=False)["input_ids"]:
            counts[index] += 1
    total = sum(counts)
    sequences = masked_sequences(tiny_tokenizer, HELDOUT, 0.3, 16, 4, "mask")
    targets = [s.original[p] for s in sequences for p in s.masked]
    expected = -sum(math.log(counts[t] / total) for t in targets) / len(targets)
    assert result.tokens == len(targets) > 0
    assert result.cross_entropy == pytest.approx(expected, rel=1e-12)
    assert result.perplexity == pytest.approx(math.exp(expected))
    assert result.training_tokens == int(total) - len(tiny_tokenizer)
    other_seed = unigram_perplexity(tiny_tokenizer, TRAIN, HELDOUT, mlm_probability=0.3, max_length=16, seed=5)
    assert other_seed.cross_entropy != result.cross_entropy


def test_unigram_errors(tiny_tokenizer):
    with pytest.raises(DiffutronError, match="no tokens"):
        token_log_probabilities(tiny_tokenizer, ["", ""])
    with pytest.raises(DiffutronError, match="no documents"):
        unigram_perplexity(tiny_tokenizer, TRAIN, [])
    with pytest.raises(DiffutronError, match="nothing was masked"):
        unigram_perplexity(tiny_tokenizer, TRAIN, ["a"], mlm_probability=0.01)


def test_chrf_and_scores_per_split():
    assert chrf(["Kitap okunur."], ["Kitap okunur."]) == pytest.approx(100.0)
    assert chrf(["xyz"], ["Kitap okunur."]) < 10
    rows = [
        {"question": "«a» ne demek?", "definition": "Bir harf.", "split": "heldout"},
        {"question": "«b» ne demek?", "definition": "İkinci harf.", "split": "trained"},
        {"question": "«c» ne demek?", "definition": "Üçüncü harf.", "split": "trained"},
    ]
    answers = {"«a» ne demek?": "", "«b» ne demek?": "İkinci harf.", "«c» ne demek?": "Üçüncü harf."}
    calls = []

    def generate(batch, config):
        calls.append(len(batch))
        return [answers[q] for q in batch]

    result = definition_scores(generate, rows, GenerationConfig(), batch_size=2)
    assert calls == [2, 1]
    assert result["splits"]["trained"] == {"chrf": pytest.approx(100.0), "questions": 2, "empty_answers": 0}
    assert result["splits"]["heldout"]["empty_answers"] == 1 and result["splits"]["heldout"]["chrf"] == 0
    assert [a["answer"] for a in result["answers"]] == ["", "İkinci harf.", "Üçüncü harf."]


def test_read_questions_checks_fields(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "«a» ne demek?", "definition": "Harf."}\n', encoding="utf-8")
    assert read_questions(path) == [{"question": "«a» ne demek?", "definition": "Harf.", "split": "all"}]
    path.write_text('{"question": "«a» ne demek?"}\n', encoding="utf-8")
    with pytest.raises(DiffutronError, match="no column 'definition'"):
        read_questions(path)


def test_commands_write_json(tiny_checkpoint, tmp_path):
    heldout, train, questions = tmp_path / "heldout.jsonl", tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    heldout.write_text("".join(json.dumps({"text": t}) + "\n" for t in HELDOUT), encoding="utf-8")
    train.write_text("".join(json.dumps({"text": t}) + "\n" for t in TRAIN), encoding="utf-8")
    questions.write_text(
        json.dumps({"question": "«kitap» ne demek?", "definition": "Bir eser.", "split": "heldout"}) + "\n",
        encoding="utf-8",
    )
    result = runner.invoke(
        app,
        [
            "eval",
            "unigram-baseline",
            "--data",
            str(heldout),
            "--train",
            str(train),
            "--tokenizer",
            str(tiny_checkpoint),
            "--max-length",
            "16",
            "-o",
            str(tmp_path / "unigram.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "unigram.json").read_text())["perplexity"] > 1
    result = runner.invoke(
        app,
        [
            "eval",
            "definitions",
            "--questions",
            str(questions),
            "--model",
            str(tiny_checkpoint),
            "--max-new-tokens",
            "4",
            "--steps",
            "4",
            "--seed",
            "0",
            "-o",
            str(tmp_path / "definitions.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "definitions.json").read_text())
    assert report["splits"]["heldout"]["questions"] == 1 and report["sampler"]["max_new_tokens"] == 4
