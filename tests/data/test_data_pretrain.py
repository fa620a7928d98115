"""The pretraining corpus: length filter counts, keep + pool sampling, determinism, packing, bad input."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
from datasets import load_from_disk
from rich.console import Console
from typer.testing import CliRunner

from diffutron.cli import app
from diffutron.cli.console import RichReporter
from diffutron.data.prepared import load_prepared, read_manifest
from diffutron.data.pretrain import build_pretrain
from diffutron.data.recipes import PretrainRecipe, PretrainSource
from diffutron.errors import DiffutronError

WORDS = "kitap okumak insanın ufkunu genişletir bugün hava çok güzel parka gidelim çay".split()
MAX_LENGTH = 48
EXACT_FIT = " ".join(["a"] * 24)  # 47 ids with the tiny tokenizer, 48 with EOS: exactly max_length
ONE_WORD_TOO_MANY = " ".join(["a"] * 25)  # 50 with EOS


def document(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """An encyclopedic .txt (paragraphs), a web .jsonl and a news .parquet, with empty documents mixed in."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("corpus")
    rng = random.Random(7)
    wiki = [document(rng) for _ in range(38)] + [EXACT_FIT, ONE_WORD_TOO_MANY]
    web = [document(rng) for _ in range(120)] + ["   "]
    news = [document(rng) for _ in range(80)] + [None]
    (folder / "wiki.txt").write_text("\n\n".join(wiki) + "\n", encoding="utf-8")
    (folder / "web.jsonl").write_text("".join(json.dumps({"content": t}) + "\n" for t in web), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist([{"body": t, "id": i} for i, t in enumerate(news)]), folder / "news.parquet")
    return folder, {"wiki": wiki, "web": web, "news": news}


def recipe(folder: Path, output: Path, **settings) -> PretrainRecipe:
    sources = [
        PretrainSource(name="wiki", path=folder / "wiki.txt", mode="keep"),
        PretrainSource(name="web", path=folder / "web.jsonl", text_field="content"),
        PretrainSource(name="news", path=folder / "news.parquet", text_field="body"),
    ]
    return PretrainRecipe(output=output, tokenizer="tiny", sources=sources, max_length=MAX_LENGTH, **settings)


def build(tokenizer, folder, output, **settings):
    console = Console(file=io.StringIO(), width=200)
    with RichReporter(console) as reporter:
        manifest = build_pretrain(recipe(folder, output, **settings), tokenizer=tokenizer, reporter=reporter)
    return manifest, console.file.getvalue()


def expected_ids(tokenizer, texts):
    """Reference: every non-empty document + EOS that fits in MAX_LENGTH."""
    kept = []
    for text in texts:
        if text is None or not text.strip():
            continue
        ids = tokenizer(text.strip(), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(ids) <= MAX_LENGTH:
            kept.append(ids)
    return kept


def test_filter_counts_keep_whole_and_sample_the_pool(tiny_tokenizer, corpus, tmp_path):
    folder, texts = corpus
    manifest, printed = build(tiny_tokenizer, folder, tmp_path / "out", pool_size=50, seed=3)
    expected = {name: expected_ids(tiny_tokenizer, values) for name, values in texts.items()}
    for name, values in texts.items():
        counts = manifest["sources"][name]
        empty = sum(1 for t in values if t is None or not t.strip())
        assert counts["read"] == len(values)
        assert counts["empty"] == empty
        assert counts["kept"] == len(expected[name])
        assert counts["too_long"] == len(values) - empty - len(expected[name])
        assert 0 < counts["too_long"] < counts["read"]  # the fixture exercises both outcomes
    assert manifest["sources"]["wiki"]["in_corpus"] == len(expected["wiki"])  # kept whole
    exact = tiny_tokenizer(EXACT_FIT, add_special_tokens=False)["input_ids"] + [tiny_tokenizer.eos_token_id]
    assert len(exact) == MAX_LENGTH and exact in expected["wiki"]
    assert len(tiny_tokenizer(ONE_WORD_TOO_MANY, add_special_tokens=False)["input_ids"]) + 1 > MAX_LENGTH
    pool = len(expected["web"]) + len(expected["news"])
    assert manifest["pool"] == {"available": pool, "requested": 50, "sampled": 50}
    assert manifest["sources"]["web"]["in_corpus"] + manifest["sources"]["news"]["in_corpus"] == 50

    rows = load_prepared(tmp_path / "out", "pretrain")["input_ids"]
    assert len(rows) == len(expected["wiki"]) + 50 == manifest["statistics"]["rows"]
    assert max(map(len, rows)) <= MAX_LENGTH and all(row[-1] == tiny_tokenizer.eos_token_id for row in rows)
    as_tuples = sorted(map(tuple, rows))
    # every wiki document is there, and every row is one of the filtered documents
    everything = {tuple(ids) for values in expected.values() for ids in values}
    assert set(map(tuple, expected["wiki"])) <= set(as_tuples) and set(as_tuples) <= everything
    assert manifest["statistics"]["tokens"] == sum(map(len, rows))
    assert manifest["tokenizer"] and manifest["seed"] == 3 and manifest["columns"] == ["input_ids"]
    assert "wiki" in printed and "in corpus" in printed  # the summary table


def test_same_seed_same_rows_other_seed_other_sample(tiny_tokenizer, corpus, tmp_path):
    folder, _ = corpus
    first, _ = build(tiny_tokenizer, folder, tmp_path / "a", pool_size=40, seed=11)
    second, _ = build(tiny_tokenizer, folder, tmp_path / "b", pool_size=40, seed=11)
    other, _ = build(tiny_tokenizer, folder, tmp_path / "c", pool_size=40, seed=12)
    rows = {name: load_from_disk(str(tmp_path / name))["input_ids"] for name in "abc"}
    assert rows["a"] == rows["b"]
    assert rows["a"] != rows["c"] and sorted(rows["a"]) != sorted(rows["c"])  # another sample, not just order
    first["recipe"]["output"] = second["recipe"]["output"] = None  # the only difference
    assert first == second


def test_packing_concatenates_with_eos_and_cuts_full_chunks(tiny_tokenizer, corpus, tmp_path):
    folder, texts = corpus
    manifest, _ = build(tiny_tokenizer, folder, tmp_path / "packed", packing=True, shuffle=False)
    chunks = load_from_disk(str(tmp_path / "packed"))["input_ids"]
    assert chunks and all(len(chunk) == MAX_LENGTH for chunk in chunks)
    # no length filter in packing mode: every non-empty document, in source order, joined by EOS
    eos = tiny_tokenizer.eos_token_id
    stream = [
        token
        for name in ("wiki", "web", "news")
        for text in texts[name]
        if text and text.strip()
        for token in tiny_tokenizer(text.strip(), add_special_tokens=False)["input_ids"] + [eos]
    ]
    assert [token for chunk in chunks for token in chunk] == stream[: len(chunks) * MAX_LENGTH]
    assert manifest["packing_counts"] == {"chunks": len(chunks), "dropped_tail_tokens": len(stream) % MAX_LENGTH}
    assert all(counts["too_long"] == 0 for counts in manifest["sources"].values())


def test_empty_corpus_after_filtering_reports_the_counts(tiny_tokenizer, corpus, tmp_path):
    folder, _ = corpus
    with pytest.raises(
        DiffutronError, match=r"empty after filtering: wiki: read 40, empty 0, too long \(> 2 tokens\) 40"
    ):
        build(tiny_tokenizer, folder, tmp_path / "out", max_document_tokens=2)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no scratch or half-written output left


def test_a_bad_row_late_in_a_source_leaves_nothing_behind(tiny_tokenizer, corpus, tmp_path):
    folder, _ = corpus
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("wiki.txt", "news.parquet"):
        (bad / name).write_bytes((folder / name).read_bytes())
    lines = (folder / "web.jsonl").read_text(encoding="utf-8").splitlines()
    (bad / "web.jsonl").write_text("\n".join(lines[:30] + ['{"content": "yarım'] + lines[30:]) + "\n", encoding="utf-8")
    output = tmp_path / "out"
    with pytest.raises(DiffutronError, match=r"web.jsonl:31: not valid JSON"):
        build(tiny_tokenizer, bad, output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


def test_recipe_checks():
    source = PretrainSource(name="a", path=Path("a.txt"), mode="keep")
    with pytest.raises(DiffutronError, match="no source has mode: pool"):
        PretrainRecipe(output=Path("o"), tokenizer="t", sources=[source], pool_size=10)
    with pytest.raises(DiffutronError, match="names must be unique"):
        PretrainRecipe(output=Path("o"), tokenizer="t", sources=[source, source])
    with pytest.raises(DiffutronError, match="exactly one of `dataset`"):
        PretrainSource(name="b")
    with pytest.raises(DiffutronError, match="must fit"):
        PretrainRecipe(output=Path("o"), tokenizer="t", sources=[source], max_length=8, max_document_tokens=9)


def test_shipped_paper_recipe_loads():
    from diffutron.data.recipes import load_pretrain_recipe

    paper = load_pretrain_recipe(Path(__file__).parents[2] / "configs" / "paper" / "data-pretrain.yaml")
    assert (paper.tokenizer, paper.max_length, paper.pool_size, paper.packing) == (
        "jhu-clsp/mmBERT-base",
        512,
        1_600_000,
        False,
    )
    assert [(s.dataset, s.config, s.mode) for s in paper.sources] == [
        ("wikimedia/wikipedia", "20231101.tr", "keep"),
        ("turkish-nlp-suite/Havadis", None, "pool"),
        ("turkish-nlp-suite/temiz-OSCAR", None, "pool"),
    ]


def test_command_line(tiny_tokenizer, corpus, tmp_path):
    folder, _ = corpus
    tiny_tokenizer.save_pretrained(tmp_path / "tokenizer")
    config = tmp_path / "recipe.yaml"
    config.write_text(
        f"output: {tmp_path / 'out'}\ntokenizer: {tmp_path / 'tokenizer'}\nmax_length: {MAX_LENGTH}\n"
        f"sources:\n  - {{name: wiki, path: {folder / 'wiki.txt'}, mode: keep}}\n"
        f"  - {{name: web, path: {folder / 'web.jsonl'}, text_field: content}}\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    result = runner.invoke(app, ["data", "pretrain", "--config", str(config), "--set", "pool_size=20"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(tmp_path / "out")
    assert manifest["pool"]["sampled"] == 20 and manifest["tokenizer"] == str(tmp_path / "tokenizer")
    again = runner.invoke(app, ["data", "pretrain", "--config", str(config)])
    assert again.exit_code == 2 and "already exists" in again.output and "--overwrite" in again.output
    typo = runner.invoke(app, ["data", "pretrain", "--config", str(config), "--set", "pool_sise=3"])
    assert typo.exit_code == 2
    assert "unknown key 'pool_sise'; valid keys: output, tokenizer, sources" in " ".join(typo.output.split())


def test_every_source_is_checked_before_any_tokenizing(tiny_tokenizer, corpus, tmp_path):
    folder, _ = corpus

    class NoTokenizing:
        def __getattr__(self, name):
            return getattr(tiny_tokenizer, name)

        def __call__(self, *args, **kwargs):
            raise AssertionError("tokenized before every source was checked")

    sources = [
        PretrainSource(name="wiki", path=folder / "wiki.txt", mode="keep"),
        PretrainSource(name="web", path=folder / "web.jsonl", text_field="text"),  # its field is "content"
    ]
    config = PretrainRecipe(output=tmp_path / "out", tokenizer="tiny", sources=sources, max_length=MAX_LENGTH)
    with pytest.raises(DiffutronError, match=r"web.jsonl:1: no column 'text'; columns found: 'content'"):
        build_pretrain(config, tokenizer=NoTokenizing())
