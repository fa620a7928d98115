"""Definition questions scored with chrF: does the model know what a word means?

Questions come from a JSONL file with `question` and `definition` fields and an optional
`split` field (e.g. "heldout" / "trained", as `diffutron embedded kenet-sft` writes eval.jsonl);
each split gets its own corpus-level chrF (sacrebleu's implementation: character 6-grams,
beta 2), so answers about held-out words can be compared with answers about trained ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from diffutron.data.readers import iter_jsonl, text_value
from diffutron.errors import DiffutronError
from diffutron.sampling.config import GenerationConfig


def read_questions(path: str | Path) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise DiffutronError(f"question file {path} does not exist")
    rows = []
    for location, record in iter_jsonl(path):
        rows.append(
            {
                "question": text_value(record, "question", location),
                "definition": text_value(record, "definition", location),
                "split": str(record.get("split") or "all"),
            }
        )
    if not rows:
        raise DiffutronError(f"{path} holds no questions")
    return rows


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus-level chrF (0-100)."""
    from sacrebleu.metrics import CHRF

    return float(CHRF().corpus_score(list(hypotheses), [list(references)]).score)


def definition_scores(
    generate: Callable[[list[str], GenerationConfig], list[str]],
    rows: Sequence[dict[str, str]],
    config: GenerationConfig,
    *,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """chrF per split of the answers `generate(questions, config)` gives; answers kept for reading."""
    if batch_size < 1:
        raise DiffutronError(f"batch_size must be >= 1, got {batch_size}")
    answers: list[str] = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        answers.extend(generate([row["question"] for row in batch], config))
        if progress is not None:
            progress(len(answers), len(rows))
    splits: dict[str, Any] = {}
    for split in dict.fromkeys(row["split"] for row in rows):
        chosen = [index for index, row in enumerate(rows) if row["split"] == split]
        splits[split] = {
            "chrf": chrf([answers[i] for i in chosen], [rows[i]["definition"] for i in chosen]),
            "questions": len(chosen),
            "empty_answers": sum(1 for i in chosen if not answers[i].strip()),
        }
    return {
        "splits": splits,
        "answers": [{**row, "answer": answer} for row, answer in zip(rows, answers)],
    }
