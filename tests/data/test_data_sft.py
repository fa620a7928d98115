"""SFT data: row mappings in the real schemas, exact label masks, drops and cuts counted, held-out split."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from diffutron.cli import app
from diffutron.cli.console import RichReporter
from diffutron.data.conversations import instruction_messages, pair_messages, resolve_columns
from diffutron.data.prepared import load_prepared, read_manifest
from diffutron.data.recipes import SFTRecipe, SFTSource, load_sft_recipe
from diffutron.data.sft import build_sft
from diffutron.errors import DiffutronError
from diffutron.model.chat import render_chat

CONFIGS = Path(__file__).parents[2] / "configs"

# rows in the schema of metunlp/LlamaTurk-Instruction-Set (instruction / input / output)
LLAMATURK = [
    {"instruction": "Türkiye'nin başkenti neresidir?", "input": "", "output": " Türkiye'nin başkenti Ankara'dır.\n"},
    {"instruction": "Cümleyi özetle.", "input": "Bugün hava çok güzel, parka gidelim.", "output": "Hava güzel."},
    {"instruction": "Boş cevap.", "input": "", "output": "   "},
]
# rows in the schema of turkish-nlp-suite/InstrucTurca (Input / Output)
INSTRUCTURCA = [
    {"Input": "Çay neyin simgesidir?", "Output": "Çay, misafirperverliğin simgesidir."},
    {"Input": "Güneş nereden doğar?", "Output": "Güneş doğudan doğar."},
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def build(tokenizer, output: Path, sources: list[SFTSource], **settings):
    recipe = SFTRecipe(output=output, tokenizer="tiny", sources=sources, **settings)
    with RichReporter(Console(file=io.StringIO(), width=200)) as reporter:
        return build_sft(recipe, tokenizer=tokenizer, reporter=reporter)


def reference_row(tokenizer, user: str, assistant: str) -> tuple[list[int], list[int]]:
    """The docs/reference-behaviour.md, sections 2 and 4 layout written out by hand: prompt ids labelled -100, answer ids labelled."""
    prompt = tokenizer(f"[Question]\n{user}\n[/Question]\n\n[Answer]\n", add_special_tokens=False)["input_ids"]
    answer = tokenizer(f"{assistant}\n[/Answer]\n\n", add_special_tokens=False)["input_ids"]
    return prompt + answer, [-100] * len(prompt) + answer


def test_row_mappings_in_the_real_schemas():
    columns = resolve_columns("instruction", {}, "test")
    assert instruction_messages(LLAMATURK[0], columns, "row 0") == [
        {"role": "user", "content": "Türkiye'nin başkenti neresidir?"},
        {"role": "assistant", "content": "Türkiye'nin başkenti Ankara'dır."},
    ]
    assert instruction_messages(LLAMATURK[1], columns, "row 1")[0]["content"] == (
        "Cümleyi özetle.\n\nBugün hava çok güzel, parka gidelim."
    )
    assert instruction_messages(LLAMATURK[2], columns, "row 2") is None  # empty answer: dropped, counted
    pair = resolve_columns("pair", {}, "test")
    assert pair == {"user": "Input", "assistant": "Output"}
    assert pair_messages(INSTRUCTURCA[0], pair, "row 0")[1]["content"] == "Çay, misafirperverliğin simgesidir."


def test_column_mapping_is_validated(tiny_tokenizer, tmp_path):
    with pytest.raises(
        DiffutronError, match=r"unknown role 'question' for format 'pair'; its roles are: user, assistant"
    ):
        SFTSource(name="x", path=Path("x.jsonl"), format="pair", columns={"question": "Input"})
    with pytest.raises(DiffutronError, match="the 'user' column is required"):
        SFTSource(name="x", path=Path("x.jsonl"), format="pair", columns={"user": None})
    path = write_jsonl(tmp_path / "instructurca.jsonl", INSTRUCTURCA)
    source = SFTSource(name="turca", path=path, format="pair", columns={"assistant": "Cevap"})
    with pytest.raises(DiffutronError, match=r"no column 'Cevap'; columns found: 'Input', 'Output'"):
        build(tiny_tokenizer, tmp_path / "out", [source])
    assert not (tmp_path / "out").exists()


def test_label_masks_are_exact(tiny_tokenizer, tmp_path):
    sources = [
        SFTSource(name="llamaturk", path=write_jsonl(tmp_path / "l.jsonl", LLAMATURK), format="instruction"),
        SFTSource(name="instructurca", path=write_jsonl(tmp_path / "i.jsonl", INSTRUCTURCA), format="pair"),
    ]
    manifest = build(tiny_tokenizer, tmp_path / "out", sources, max_length=256)
    rows = load_prepared(tmp_path / "out", "sft")
    expected = [
        reference_row(tiny_tokenizer, "Türkiye'nin başkenti neresidir?", "Türkiye'nin başkenti Ankara'dır."),
        reference_row(tiny_tokenizer, "Cümleyi özetle.\n\nBugün hava çok güzel, parka gidelim.", "Hava güzel."),
        reference_row(tiny_tokenizer, INSTRUCTURCA[0]["Input"], INSTRUCTURCA[0]["Output"]),
        reference_row(tiny_tokenizer, INSTRUCTURCA[1]["Input"], INSTRUCTURCA[1]["Output"]),
    ]
    assert [(row["input_ids"], row["labels"]) for row in rows] == expected
    counts = manifest["sources"]["llamaturk"]
    assert [counts[key] for key in ("read", "empty", "kept", "prompt_too_long", "truncated")] == [3, 1, 2, 0, 0]
    assert manifest["columns"] == ["input_ids", "labels"] and manifest["label_ignore_index"] == -100
    # the unlabelled prefix is exactly the prompt the sampler gets at inference
    first = rows[0]
    prompt = tiny_tokenizer(render_chat(LLAMATURK[0]["instruction"]), add_special_tokens=False)["input_ids"]
    assert first["input_ids"][: len(prompt)] == prompt and first["labels"][len(prompt) - 1] == -100
    assert first["labels"][len(prompt)] == first["input_ids"][len(prompt)] != -100


def test_multi_turn_only_the_last_answer_is_learned(tiny_tokenizer, tmp_path):
    conversation = [
        {"role": "system", "content": "Sen yardımsever bir asistansın."},
        {"role": "user", "content": "Merhaba"},
        {"role": "assistant", "content": "Merhaba! Nasıl yardımcı olabilirim?"},
        {"role": "user", "content": "Başkent neresi?"},
        {"role": "assistant", "content": "Ankara."},
    ]
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": conversation}])
    build(tiny_tokenizer, tmp_path / "out", [SFTSource(name="chat", path=path)])
    row = load_prepared(tmp_path / "out")[0]
    prompt = tiny_tokenizer(render_chat(conversation[:-1]), add_special_tokens=False)["input_ids"]
    answer = tiny_tokenizer("Ankara.\n[/Answer]\n\n", add_special_tokens=False)["input_ids"]
    assert render_chat(conversation[:-1]).endswith("[Question]\nBaşkent neresi?\n[/Question]\n\n[Answer]\n")
    assert row["input_ids"] == prompt + answer
    assert row["labels"] == [-100] * len(prompt) + answer


def test_text_rows_are_learned_whole_next_to_conversations(tiny_tokenizer, tmp_path):
    texts = [{"body": "Kitap okumak insanın ufkunu genişletir."}, {"body": "  "}, {"body": "Çay demlendi. " * 20}]
    sources = [
        SFTSource(name="turca", path=write_jsonl(tmp_path / "t.jsonl", INSTRUCTURCA[:1]), format="pair"),
        SFTSource(name="replay", path=write_jsonl(tmp_path / "r.jsonl", texts), format="text", columns={"text": "body"}),
    ]
    manifest = build(tiny_tokenizer, tmp_path / "out", sources, max_length=48)
    rows = load_prepared(tmp_path / "out")
    first = tiny_tokenizer(texts[0]["body"], add_special_tokens=False)["input_ids"]
    long = tiny_tokenizer(texts[2]["body"].strip(), add_special_tokens=False)["input_ids"]
    assert len(first) < 48 < len(long)
    assert [(row["input_ids"], row["labels"]) for row in list(rows)[1:]] == [(first, first), (long[:48], long[:48])]
    assert -100 in rows[0]["labels"]  # the conversation keeps its unlabelled prompt
    counts = manifest["sources"]["replay"]
    assert [counts[key] for key in ("read", "empty", "kept", "truncated")] == [3, 1, 2, 1]
    assert counts["answer_tokens"] == counts["tokens"] == len(first) + 48
    with pytest.raises(DiffutronError, match=r"unknown role 'user' for format 'text'; its roles are: text"):
        SFTSource(name="bad", path=tmp_path / "r.jsonl", format="text", columns={"user": "body"})


def test_long_prompts_dropped_long_answers_cut_and_counted(tiny_tokenizer, tmp_path):
    short_user, long_answer = "Kitap oku.", " ".join(["Kitap okumak insanın ufkunu genişletir."] * 8)
    long_user = " ".join(["Çocuklar bahçede top oynuyor."] * 8)
    fitting, labels = reference_row(tiny_tokenizer, short_user, "Evet.")
    prompt_length = labels.count(-100)
    max_length = len(fitting)  # the first example fits exactly
    rows = [
        {"Input": short_user, "Output": "Evet."},  # fits
        {"Input": short_user, "Output": long_answer},  # cut at max_length
        {"Input": long_user, "Output": "Evet."},  # prompt alone too long: dropped
    ]
    source = SFTSource(name="turca", path=write_jsonl(tmp_path / "t.jsonl", rows), format="pair")
    manifest = build(tiny_tokenizer, tmp_path / "out", [source], max_length=max_length)
    counts = manifest["sources"]["turca"]
    assert (counts["read"], counts["kept"], counts["prompt_too_long"], counts["truncated"]) == (3, 2, 1, 1)
    data = load_prepared(tmp_path / "out")
    full_ids, full_labels = reference_row(tiny_tokenizer, short_user, long_answer)
    assert data[0]["input_ids"] == fitting and data[0]["labels"] == labels
    assert data[1]["input_ids"] == full_ids[:max_length] and data[1]["labels"] == full_labels[:max_length]
    assert counts["answer_tokens"] == 2 * (max_length - prompt_length)
    # a prompt of exactly max_length leaves no answer token to learn: dropped as well
    with pytest.raises(
        DiffutronError, match=rf"prompt leaving no answer token within max_length {prompt_length} 3, kept 0"
    ):
        build(tiny_tokenizer, tmp_path / "exact", [source], max_length=prompt_length)
    one_more = build(tiny_tokenizer, tmp_path / "one", [source], max_length=prompt_length + 1)
    assert one_more["sources"]["turca"]["prompt_too_long"] == 1  # only the long prompt


def test_nothing_left_is_an_error_with_counts(tiny_tokenizer, tmp_path):
    source = SFTSource(name="turca", path=write_jsonl(tmp_path / "t.jsonl", INSTRUCTURCA), format="pair")
    with pytest.raises(
        DiffutronError, match=r"no SFT example is left: turca: read 2, empty .* 0, prompt .* max_length 4 2"
    ):
        build(tiny_tokenizer, tmp_path / "out", [source], max_length=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jsonl"]


def test_held_out_split_is_seeded_and_disjoint(tiny_tokenizer, tmp_path):
    rows = [{"Input": f"Soru {index}: kitap mı çay mı?", "Output": f"Cevap {index}."} for index in range(20)]
    source = SFTSource(name="turca", path=write_jsonl(tmp_path / "t.jsonl", rows), format="pair")
    manifest = build(tiny_tokenizer, tmp_path / "a", [source], eval_size=5, seed=1)
    build(tiny_tokenizer, tmp_path / "b", [source], eval_size=5, seed=1)
    train, held_out = load_prepared(tmp_path / "a"), load_prepared(tmp_path / "a-eval")
    assert (len(train), len(held_out)) == (15, 5)
    assert manifest["eval"] == {"path": str(tmp_path / "a-eval"), "rows": 5}
    assert read_manifest(tmp_path / "a-eval")["split"] == "eval"
    together = sorted(map(tuple, list(train["input_ids"]) + list(held_out["input_ids"])))
    assert len(set(together)) == 20
    assert load_prepared(tmp_path / "b-eval")["input_ids"] == held_out["input_ids"]
    other = build(tiny_tokenizer, tmp_path / "c", [source], eval_size=0.25, seed=2)
    assert other["eval"]["rows"] == 5 and load_prepared(tmp_path / "c-eval")["input_ids"] != held_out["input_ids"]
    single = SFTSource(name="one", path=source.path, format="pair", limit=1)
    with pytest.raises(DiffutronError, match="cannot hold out eval_size 0.5 of 1 examples"):
        build(tiny_tokenizer, tmp_path / "d", [single], eval_size=0.5)
    with pytest.raises(DiffutronError, match="eval_size 20 leaves no training example"):
        build(tiny_tokenizer, tmp_path / "e", [source], eval_size=20)
    assert not (tmp_path / "d").exists() and not (tmp_path / "e-eval").exists()


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"messages": [{"role": "user", "content": "Merhaba"}]}, "the last message must be the assistant's answer"),
        ({"messages": [{"role": "assistant", "content": "Merhaba"}]}, "give at least one user message"),
        (
            {
                "messages": [
                    {"role": "user", "content": "A"},
                    {"role": "assistant", "content": "B"},
                    {"role": "assistant", "content": "C"},
                ]
            },
            "message 2 has role 'assistant' but 'user' was expected",
        ),
        ({"messages": "Merhaba"}, "must be a non-empty list"),
        ({"messages": [{"role": "user", "text": "x"}]}, "message 0 must be an object with text fields"),
        ({"conversation": []}, "no column 'messages'; columns found: 'conversation'"),
    ],
)
def test_malformed_messages_name_file_and_line(tiny_tokenizer, tmp_path, record, message):
    good = {"messages": [{"role": "user", "content": "Merhaba"}, {"role": "assistant", "content": "Selam"}]}
    path = write_jsonl(tmp_path / "chat.jsonl", [good, good, record])
    with pytest.raises(DiffutronError, match=rf"chat\.jsonl:3: .*{message}"):
        build(tiny_tokenizer, tmp_path / "out", [SFTSource(name="chat", path=path)])
    assert not (tmp_path / "out").exists()


def test_shipped_recipes():
    stage1 = load_sft_recipe(CONFIGS / "paper" / "data-sft-stage1.yaml")
    stage2 = load_sft_recipe(CONFIGS / "paper" / "data-sft-stage2.yaml")
    assert (stage1.max_length, stage2.max_length) == (256, 256)
    assert (
        stage1.sources[0].dataset == "metunlp/LlamaTurk-Instruction-Set" and stage1.sources[0].format == "instruction"
    )
    assert stage2.sources[0].dataset == "turkish-nlp-suite/InstrucTurca"
    assert stage2.sources[0].columns == {"user": "Input", "assistant": "Output"}
    assert stage2.eval_size == 0


def test_command_line_flags(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(tmp_path / "tokenizer")
    rows = [{"soru": f"Soru {index}?", "cevap": f"Cevap {index}."} for index in range(6)]
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    arguments = [
        "data",
        "sft",
        "--path",
        str(path),
        "--format",
        "pair",
        "--column",
        "user=soru",
        "--column",
        "assistant=cevap",
    ]
    arguments += [
        "--tokenizer",
        str(tmp_path / "tokenizer"),
        "--output",
        str(tmp_path / "out"),
        "--max-length",
        "64",
        "--eval-size",
        "2",
    ]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert read_manifest(tmp_path / "out")["statistics"]["rows"] == 4
    assert read_manifest(tmp_path / "out-eval")["statistics"]["rows"] == 2
    missing = CliRunner().invoke(
        app, ["data", "sft", "--path", str(path), "--format", "pair", "--output", str(tmp_path / "x")]
    )
    assert missing.exit_code == 2 and "missing required key 'tokenizer'" in " ".join(missing.output.split())
