"""Bad data-building inputs as tables: output paths (checked before any source is read, never deleting a
source or the tokenizer), and damaged prepared directories. Each row names the error it must give."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from datasets import Dataset

from diffutron.data import pretrain, sft
from diffutron.data.conversations import checked_messages
from diffutron.data.prepared import check_tokenizer, load_prepared, read_manifest, write_prepared
from diffutron.data.recipes import PretrainRecipe, PretrainSource, SFTRecipe, SFTSource
from diffutron.data.tokenizer_training import train_tokenizer
from diffutron.embedded.corpus import build_offline_corpus, local_sources, train_corpus_tokenizer
from diffutron.embedded.questions import build_kenet_sft
from diffutron.model.tokens import tokenizer_fingerprint
from diffutron.errors import DiffutronError
from helpers.tiny import build_tokenizer

UNWRITABLE = Path("/sys/diffutron-test-output")  # sysfs: no new entries, not even for root
TEXTS = ["Kitap okumak insanın ufkunu genişletir.", "Bugün hava çok güzel, parka gidelim.", "Çay bir simgedir."]


def snapshot(path: Path) -> dict[str, str]:
    return {
        str(file.relative_to(path)): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


def never_called(*_, **__):
    raise AssertionError("a source was read before the output was checked")


def corpus_file(tmp: Path) -> Path:
    """The user's corpus: one .jsonl file in its own folder."""
    (tmp / "corpus").mkdir(exist_ok=True)
    path = tmp / "corpus" / "notes.jsonl"
    path.write_text("".join(json.dumps({"text": text}, ensure_ascii=False) + "\n" for text in TEXTS), encoding="utf-8")
    return path


def build_pretrain(tokenizer, source: Path, output: Path, tokenizer_path: str = "tiny", **options):
    recipe = PretrainRecipe(
        output=output, tokenizer=tokenizer_path, sources=[PretrainSource(name="notes", path=source)], max_length=48
    )
    return pretrain.build_pretrain(recipe, tokenizer=tokenizer, **options)


def build_sft(tokenizer, source: Path, output: Path, tokenizer_path: str = "tiny", eval_output=None, **options):
    recipe = SFTRecipe(
        output=output,
        tokenizer=tokenizer_path,
        sources=[SFTSource(name="notes", path=source, format="text")],
        eval_size=1 if eval_output else 0,
        eval_output=eval_output,
    )
    return sft.build_sft(recipe, tokenizer=tokenizer, **options)


def _tokenizer_inside(tmp: Path, source: Path) -> dict:
    build_tokenizer().save_pretrained(tmp / "out" / "tokenizer")
    return {"output": tmp / "out", "tokenizer_path": str(tmp / "out" / "tokenizer"), "overwrite": True}


def _existing(tmp: Path, source: Path) -> dict:
    (tmp / "out").mkdir()
    return {"output": tmp / "out"}


def _under_a_file(tmp: Path, source: Path) -> dict:
    (tmp / "file").write_text("notes", encoding="utf-8")
    return {"output": tmp / "file" / "out"}


# each row: (name, setup(tmp, source file) -> builder keyword arguments, fragment)
OUTPUTS: list[tuple[str, Callable[[Path, Path], dict], str]] = [
    (
        "the corpus folder, with overwrite",
        lambda tmp, source: {"output": source.parent, "overwrite": True},
        "holds the input",
    ),
    (
        "the corpus file, with overwrite",
        lambda tmp, source: {"output": source, "overwrite": True},
        "is a file, not a directory",
    ),
    ("a folder holding the tokenizer", _tokenizer_inside, "holds the input"),
    ("an existing folder", _existing, "already exists; choose another output or pass --overwrite"),
    ("under a file", _under_a_file, "is a file, not a directory"),
    ("unwritable", lambda tmp, source: {"output": UNWRITABLE / "out"}, "is not writable"),
]
SFT_OUTPUTS = [
    ("eval output is the output", lambda tmp, source: {"output": tmp / "a", "eval_output": tmp / "a"}, "different"),
    (
        "eval output is the corpus folder",
        lambda tmp, source: {"output": tmp / "a", "eval_output": source.parent, "overwrite": True},
        "holds the input",
    ),
]


@pytest.mark.parametrize(
    ("builder", "setup", "fragment"),
    [(build_pretrain, *row[1:]) for row in OUTPUTS] + [(build_sft, *row[1:]) for row in OUTPUTS + SFT_OUTPUTS],
    ids=[f"pretrain: {row[0]}" for row in OUTPUTS] + [f"sft: {row[0]}" for row in OUTPUTS + SFT_OUTPUTS],
)
def test_bad_output_is_refused_before_any_source_is_read(
    tiny_tokenizer, tmp_path, monkeypatch, builder, setup, fragment
):
    source = corpus_file(tmp_path)
    arguments = setup(tmp_path, source)
    before = snapshot(tmp_path)
    monkeypatch.setattr(pretrain, "open_source", never_called)
    monkeypatch.setattr(sft, "open_source", never_called)
    with pytest.raises(DiffutronError, match=re.escape(fragment)):
        builder(tiny_tokenizer, source, **arguments)
    assert snapshot(tmp_path) == before  # the corpus and the tokenizer are intact; nothing written


def _corpus_with(tmp: Path, line: str) -> Path:
    """The user's corpus with `line` (a raw JSONL line) as its second record."""
    path = corpus_file(tmp)
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], line, *lines[1:]]) + "\n", encoding="utf-8")
    return path


# bad records in a corpus: (name, builder, the JSONL line, fragment)
CORPUS_RECORDS = [
    (
        "pretrain: lone surrogate",
        build_pretrain,
        '{"text": "Kit\\ud800ap"}',
        "notes.jsonl:2: field 'text' is not valid Unicode: character 4 is a lone surrogate \\ud800",
    ),
    (
        "sft: lone surrogate",
        build_sft,
        '{"text": "\\udcff"}',
        "notes.jsonl:2: field 'text' is not valid Unicode: character 1 is a lone surrogate \\udcff",
    ),
]


@pytest.mark.parametrize(
    ("builder", "line", "fragment"), [row[1:] for row in CORPUS_RECORDS], ids=[row[0] for row in CORPUS_RECORDS]
)
def test_bad_corpus_record_names_its_line(tiny_tokenizer, tmp_path, builder, line, fragment):
    source = _corpus_with(tmp_path, line)
    with pytest.raises(DiffutronError, match=re.escape(fragment)):
        builder(tiny_tokenizer, source, tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()


def test_a_conversation_with_a_lone_surrogate_names_its_message():
    record = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b\ud800"}]}
    with pytest.raises(DiffutronError, match=re.escape("f.jsonl:3: message 1 content is not valid Unicode")):
        checked_messages(record, "messages", "f.jsonl:3")


def test_an_output_beside_the_corpus_is_fine(tiny_tokenizer, tmp_path):
    source = corpus_file(tmp_path)
    build_pretrain(tiny_tokenizer, source, source.parent / "prepared")
    assert len(load_prepared(source.parent / "prepared")) == len(TEXTS)
    build_pretrain(tiny_tokenizer, source, source.parent / "prepared", overwrite=True)  # replaced, source kept
    assert source.read_text(encoding="utf-8").count("\n") == len(TEXTS)


OTHER_BUILDERS = [
    (
        "offline corpus over its local source",
        lambda tmp: build_offline_corpus(
            corpus_file(tmp).parent, sources=local_sources([corpus_file(tmp)], "CC0"), overwrite=True
        ),
        "holds the input",
    ),
    ("kenet sft into a file", lambda tmp: build_kenet_sft(corpus_file(tmp), synsets=[]), "is a file, not a directory"),
    ("tokenizer into a file", lambda tmp: train_tokenizer(TEXTS, corpus_file(tmp)), "is a file, not a directory"),
    ("tokenizer unwritable", lambda tmp: train_tokenizer(TEXTS, UNWRITABLE), "is not writable"),
    (
        "tokenizer over its corpus",
        lambda tmp: train_corpus_tokenizer(corpus_file(tmp).parent, tmp, overwrite=True),
        "holds the input",
    ),
]


@pytest.mark.parametrize(("build", "fragment"), [row[1:] for row in OTHER_BUILDERS], ids=[r[0] for r in OTHER_BUILDERS])
def test_other_builders_check_their_output(tmp_path, build, fragment):
    with pytest.raises(DiffutronError, match=re.escape(fragment)):
        build(tmp_path)
    assert corpus_file(tmp_path).read_text(encoding="utf-8").count("\n") == len(TEXTS)


def test_the_manifest_records_the_tokenizer_and_loading_compares_it(tiny_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    source = corpus_file(tmp_path)
    manifest = build_sft(tiny_tokenizer, source, tmp_path / "prepared")
    assert manifest["tokenizer_fingerprint"] == read_manifest(tmp_path / "prepared")["tokenizer_fingerprint"]
    tiny_tokenizer.save_pretrained(tmp_path / "copy")
    check_tokenizer(tmp_path / "prepared", AutoTokenizer.from_pretrained(tmp_path / "copy"))  # same vocabulary
    other = build_tokenizer(vocab_size=280)
    assert tokenizer_fingerprint(other) != manifest["tokenizer_fingerprint"]
    with pytest.raises(DiffutronError, match="prepared was built with the tokenizer .*, whose vocabulary differs"):
        check_tokenizer(tmp_path / "prepared", other)


def _state_not_json(path: Path) -> None:
    (path / "state.json").write_text("{", encoding="utf-8")


def _manifest_a_list(path: Path) -> None:
    (path / "manifest.json").write_text("[]", encoding="utf-8")


def _shard_replaced_by_garbage(path: Path) -> None:
    shard = next(path.glob("*.arrow"))
    shard.write_bytes(b"not arrow" * 10 + shard.read_bytes()[-8:])  # ends like a stream, is none


PREPARED = [
    ("state.json not JSON", _state_not_json, "state.json cannot be read"),
    ("manifest a list", _manifest_a_list, "manifest.json is not a JSON object"),
    ("shard of garbage", _shard_replaced_by_garbage, "cannot be read as a prepared dataset"),
]


@pytest.mark.parametrize(("damage", "fragment"), [row[1:] for row in PREPARED], ids=[row[0] for row in PREPARED])
def test_damaged_prepared_directory(tmp_path, damage, fragment):
    path = write_prepared(Dataset.from_dict({"input_ids": [[1, 2], [3]]}), tmp_path / "data", {}, overwrite=False)
    damage(path)
    with pytest.raises(DiffutronError, match=re.escape(fragment)):
        load_prepared(path)


def test_a_failed_final_move_keeps_the_built_data_and_says_where(tiny_tokenizer, tmp_path, monkeypatch):
    source = corpus_file(tmp_path)
    real_replace = os.replace

    def failing_replace(source_path, target):
        if Path(target) == tmp_path / "prepared":
            raise OSError(28, "No space left on device")
        real_replace(source_path, target)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(DiffutronError, match="could not move the finished output into place") as error:
        build_pretrain(tiny_tokenizer, source, tmp_path / "prepared")
    kept = Path(re.search(r"it is kept at (\S+)$", str(error.value)).group(1))
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(load_prepared(kept)) == len(TEXTS)
    shutil.rmtree(kept)
