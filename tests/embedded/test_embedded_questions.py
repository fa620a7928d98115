"""The KeNet instruction-data builder on a handful of hand-written synsets."""

from __future__ import annotations

import json
import random

import pytest

from diffutron.embedded.corpus import is_held_out
from diffutron.embedded.kenet import Synset
from diffutron.embedded.questions import DEFINITION_QUESTIONS, build_kenet_sft, stage2_examples
from diffutron.errors import DiffutronError


def synset(identifier, words, definition, senses=None, examples=(), relations=()):
    return Synset(
        id=identifier,
        pos="n",
        literals=tuple(words),
        senses=tuple(senses or [1] * len(words)),
        definition=definition,
        examples=tuple(examples),
        relations=tuple(relations),
    )


SYNSETS = [
    synset(
        "S-book",
        ["kitap"],
        "ciltli kâğıt yaprakların bütünü",
        examples=["Kitabı okudum."],
        relations=[("HYPERNYM", "S-pub")],
    ),
    synset("S-pub", ["yayın", "neşriyat"], "yayımlanan eser"),
    synset("S-work", ["kitap", "eser", "yapıt"], "herhangi bir konuda yazılmış eser", senses=[2, 1, 1]),
    synset("S-hot", ["sıcak"], "ısısı yüksek olan", relations=[("ANTONYM", "S-cold")]),
    synset("S-cold", ["soğuk"], "ısısı düşük olan", relations=[("ANTONYM", "S-hot")]),
    synset("S-name", ["(özel isim)"], "bir özel isim"),
]
MANY = SYNSETS + [synset(f"S-{index}", [f"kelime{index}"], f"tanım {index}") for index in range(300)]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_stage2_tasks_take_answers_from_the_synset_and_its_relations():
    by_id = {s.id: s for s in SYNSETS}
    rng = random.Random(0)
    tasks = {e.task: e for e in stage2_examples(by_id["S-book"], by_id, rng)}
    assert tasks["example"].answer == "Kitabı okudum." and "«kitap»" in tasks["example"].question
    assert tasks["hypernym"].answer == "Üst kavramı: yayın."
    assert set(tasks) == {"example", "hypernym"}
    hot = {e.task: e for e in stage2_examples(by_id["S-hot"], by_id, rng)}
    assert hot["antonym"].answer == "Zıt anlamlısı: soğuk."
    work = {e.task: e for e in stage2_examples(by_id["S-work"], by_id, rng)}
    others = [w for w in ["kitap", "eser", "yapıt"] if w != work["synonym"].word]
    assert work["synonym"].answer == f"Eş anlamlıları: {', '.join(others)}."
    assert stage2_examples(by_id["S-name"], by_id, rng) == []


def test_build_holds_out_synsets_and_asks_main_senses_only(tmp_path):
    manifest = build_kenet_sft(tmp_path / "sft", synsets=MANY, seed=5, heldout_fraction=0.2, eval_size=10)
    stage1 = read_jsonl(tmp_path / "sft" / "stage1.jsonl")
    stage2 = read_jsonl(tmp_path / "sft" / "stage2.jsonl")
    evaluation = read_jsonl(tmp_path / "sft" / "eval.jsonl")
    held = {s.id for s in MANY if s.words and is_held_out(f"kenet:{s.id}", 5, 0.2)}
    assert 20 < len(held) < 110 and manifest["synsets"]["heldout"] == len(held)
    assert not held & {row["synset"] for row in stage1 + stage2}
    for row in stage1:
        user, assistant = row["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert user["content"] in {q.format(word=row["word"]) for q in DEFINITION_QUESTIONS}
    by_word = {row["word"]: row for row in stage1}
    if "S-work" not in held:
        assert by_word["eser"]["messages"][1]["content"] == "Herhangi bir konuda yazılmış eser."
    if "S-book" not in held:  # "kitap" is asked about its first sense only
        assert [r["synset"] for r in stage1 if r["word"] == "kitap"] == ["S-book"]
    assert {row["split"] for row in evaluation} == {"heldout", "trained"}
    for row in evaluation:
        assert (row["synset"] in held) == (row["split"] == "heldout")
        assert row["question"] == f"«{row['word']}» ne demek?"
    assert manifest["examples"]["eval"] == {"heldout": 10, "trained": 10}
    replay = [row for row in stage2 if row["task"] == "definition"]
    assert replay and len(replay) == round((len(stage2) - len(replay)) * 0.25 / 0.75)


def test_build_is_deterministic_for_a_seed(tmp_path):
    for name in ("a", "b"):
        build_kenet_sft(tmp_path / name, synsets=MANY, seed=9, eval_size=5)
    for file in ("stage1.jsonl", "stage2.jsonl", "eval.jsonl"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    build_kenet_sft(tmp_path / "c", synsets=MANY, seed=10, eval_size=5)
    assert (tmp_path / "a" / "stage1.jsonl").read_bytes() != (tmp_path / "c" / "stage1.jsonl").read_bytes()


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(DiffutronError, match="replay_fraction"):
        build_kenet_sft(tmp_path / "x", synsets=MANY, replay_fraction=1.0)
    (tmp_path / "taken").mkdir()
    with pytest.raises(DiffutronError, match="already exists"):
        build_kenet_sft(tmp_path / "taken", synsets=MANY)
