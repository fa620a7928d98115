"""`diffutron embedded kenet-sft`: instruction data from the Turkish WordNet KeNet, in two stages.

Stage 1 (dictionary): «kelime» ne demek? -> the definition of the word's main sense (its
lowest-numbered KeNet sense, so one question has one answer), in several phrasings.
Stage 2 (richer tasks): use a word in a sentence -> one of the synset's example sentences;
synonyms -> the synset's other literals; antonyms and hypernyms -> the words of the related
synsets; plus a replay share of stage-1 questions so that the dictionary skill is kept.

Synsets that the offline corpus holds out (the same seeded hash of "kenet:<id>") are left out of
both stages; `eval.jsonl` lists definition questions about words whose main sense is a held-out
synset, and the same number about words whose main sense was trained.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from diffutron.data.turkish import as_sentence
from diffutron.embedded.corpus import DEFAULT_HELDOUT_FRACTION, DEFAULT_SEED, is_held_out
from diffutron.embedded.kenet import Synset, primary_senses, read_kenet
from diffutron.errors import DiffutronError
from diffutron.files import atomic_directory, atomic_file, check_destination

DEFINITION_QUESTIONS = (
    "«{word}» ne demek?",
    "«{word}» kelimesinin anlamı nedir?",
    "«{word}» ne anlama gelir?",
    "«{word}» sözcüğünün anlamını açıklar mısın?",
    "«{word}» kelimesi ne demektir?",
    "«{word}» nedir?",
)
EVAL_QUESTION = DEFINITION_QUESTIONS[0]
EXAMPLE_QUESTIONS = (
    "«{word}» kelimesini bir cümlede kullanır mısın?",
    "«{word}» ile bir örnek cümle yaz.",
    "«{word}» sözcüğü için bir örnek cümle verir misin?",
)
SYNONYM_QUESTIONS = (
    "«{word}» kelimesinin eş anlamlıları nelerdir?",
    "«{word}» ile aynı anlama gelen kelimeler hangileridir?",
)
ANTONYM_QUESTIONS = (
    "«{word}» kelimesinin zıt anlamlısı nedir?",
    "«{word}» sözcüğünün karşıt anlamlısı nedir?",
)
HYPERNYM_QUESTIONS = (
    "«{word}» hangi kavramın bir türüdür?",
    "«{word}» kelimesinin üst kavramı nedir?",
)


@dataclass(frozen=True)
class Example:
    task: str
    synset: str
    word: str
    question: str
    answer: str

    def record(self) -> dict:
        return {
            "messages": [{"role": "user", "content": self.question}, {"role": "assistant", "content": self.answer}],
            "task": self.task,
            "synset": self.synset,
            "word": self.word,
        }


def _listing(words: Iterable[str]) -> str:
    return ", ".join(dict.fromkeys(words))


def definition_examples(synset: Synset, primary: dict[str, str], rng: random.Random) -> list[Example]:
    """A question about each word of the synset whose main sense this synset is."""
    answer = as_sentence(synset.definition)
    return [
        Example("definition", synset.id, word, rng.choice(DEFINITION_QUESTIONS).format(word=word), answer)
        for word in synset.words
        if primary.get(word) == synset.id
    ]


def stage2_examples(synset: Synset, by_id: dict[str, Synset], rng: random.Random) -> list[Example]:
    """Every richer task this synset supports, each asked about one of its words."""
    if not synset.words:
        return []
    word = rng.choice(synset.words)
    answers: dict[str, tuple[Sequence[str], str]] = {}
    if synset.examples:
        answers["example"] = (EXAMPLE_QUESTIONS, as_sentence(rng.choice(synset.examples)))
    others = [other for other in synset.words if other != word]
    if others:
        answers["synonym"] = (SYNONYM_QUESTIONS, f"Eş anlamlıları: {_listing(others)}.")
    for task, questions, label in (
        ("antonym", ANTONYM_QUESTIONS, "Zıt anlamlısı"),
        ("hypernym", HYPERNYM_QUESTIONS, "Üst kavramı"),
    ):
        related = [by_id[t].words[0] for t in synset.related(task.upper()) if t in by_id and by_id[t].words]
        if related:
            answers[task] = (questions, f"{label}: {_listing(related)}.")
    return [
        Example(task, synset.id, word, rng.choice(questions).format(word=word), answer)
        for task, (questions, answer) in answers.items()
    ]


def evaluation_rows(
    split: str, pool: Sequence[Synset], primary: dict[str, str], rng: random.Random, size: int
) -> list[dict]:
    """Definition questions about words whose main sense is a synset of `pool`."""
    pairs = [(word, synset) for synset in pool for word in synset.words if primary.get(word) == synset.id]
    return [
        {
            "split": split,
            "synset": synset.id,
            "word": word,
            "question": EVAL_QUESTION.format(word=word),
            "definition": as_sentence(synset.definition),
        }
        for word, synset in rng.sample(pairs, min(size, len(pairs)))
    ]


def build_kenet_sft(
    out_dir: str | Path,
    *,
    synsets: Sequence[Synset] | None = None,
    seed: int = DEFAULT_SEED,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    stage1_limit: int | None = None,
    stage2_limit: int | None = None,
    replay_fraction: float = 0.25,
    eval_size: int = 200,
    overwrite: bool = False,
) -> dict:
    """Write stage1.jsonl, stage2.jsonl (a `messages` column each), eval.jsonl and manifest.json."""
    if not 0 <= replay_fraction < 1:
        raise DiffutronError(f"replay_fraction must be in [0, 1), got {replay_fraction}")
    out_dir = Path(out_dir)
    check_destination(out_dir, overwrite=overwrite)
    synsets = read_kenet() if synsets is None else synsets
    by_id = {synset.id: synset for synset in synsets}
    rng = random.Random(seed)
    held = [s for s in synsets if s.words and is_held_out(f"kenet:{s.id}", seed, heldout_fraction)]
    trained = [s for s in synsets if s.words and not is_held_out(f"kenet:{s.id}", seed, heldout_fraction)]

    primary = primary_senses(synsets)
    stage1 = [example for synset in trained for example in definition_examples(synset, primary, rng)]
    stage2 = [example for synset in trained for example in stage2_examples(synset, by_id, rng)]
    rng.shuffle(stage1)
    rng.shuffle(stage2)
    stage1 = stage1[:stage1_limit]
    stage2 = stage2[:stage2_limit]
    replay = rng.sample(stage1, min(len(stage1), round(len(stage2) * replay_fraction / (1 - replay_fraction))))
    stage2 = stage2 + replay
    rng.shuffle(stage2)

    evaluation = [
        *evaluation_rows("heldout", held, primary, rng, eval_size),
        *evaluation_rows("trained", trained, primary, rng, eval_size),
    ]
    manifest = {
        "kind": "kenet-sft",
        "seed": seed,
        "heldout_fraction": heldout_fraction,
        "heldout_rule": "a synset is held out when the offline corpus holds out document 'kenet:<id>'",
        "synsets": {"with_words": len(held) + len(trained), "heldout": len(held), "trained": len(trained)},
        "files": {"stage1": "stage1.jsonl", "stage2": "stage2.jsonl", "eval": "eval.jsonl"},
        "examples": {
            "stage1": dict(Counter(e.task for e in stage1)),
            "stage2": dict(Counter(e.task for e in stage2)),
            "eval": dict(Counter(row["split"] for row in evaluation)),
        },
        "replay_fraction": replay_fraction,
        "license": "GPL-3.0 (derived from KeNet, nlptoolkit-wordnet)",
    }
    with atomic_directory(out_dir, overwrite=overwrite) as temporary:
        outputs = {"stage1": [e.record() for e in stage1], "stage2": [e.record() for e in stage2], "eval": evaluation}
        for name, rows in outputs.items():
            with atomic_file(temporary / f"{name}.jsonl") as handle:
                handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        with atomic_file(temporary / "manifest.json") as handle:
            json.dump(manifest, handle, ensure_ascii=False, indent=2)
    return manifest
