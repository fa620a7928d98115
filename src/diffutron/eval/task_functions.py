"""Prompt pieces, gold labels and metrics of the CETVEL tasks that a Jinja template cannot express cleanly.

Referenced from the task YAML files as `!function diffutron.eval.task_functions.<name>`. Every
gold label is checked: a label that names no choice is an error naming it, never a document
silently scored wrong.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from diffutron.errors import DiffutronError

logger = logging.getLogger(__name__)

# a score s in [0, 5] falls in bucket i when STS_EDGES[i-1] <= s < STS_EDGES[i]
STS_EDGES = (0.5, 1.5, 2.5, 3.5, 4.5)
STS_MAX_SCORE = 5.0
XCOPA_CONNECTORS = {"cause": " çünkü", "effect": " bu yüzden"}
BELEBELE_CHOICES = ("A", "B", "C", "D")
IRONY_CHOICES = ("Hayır", "Evet")
MNLI_CHOICES = ("TUTARLI", "ALAKASIZ", "ÇELİŞKİLİ")  # 0 entailment, 1 neutral, 2 contradiction
NEWS_CAT_CHOICES = ("spor", "magazin", "siyaset", "sağlık", "ekonomi")
NEWS_CAT_LABELS = ("sport", "magazine", "politics", "health", "economy")  # the hub dataset's, same order
MNLI_NO_GOLD = -1  # the hub's label of pairs whose annotators did not agree

# Documents dropped by a task's `process_docs` when it was last built, by lm-eval task name.
DROPPED_DOCUMENTS: dict[str, int] = {}


def belebele_choices(doc: Mapping[str, Any]) -> list[str]:
    return list(BELEBELE_CHOICES)


def belebele_target(doc: Mapping[str, Any]) -> int:
    """`correct_answer_num` "1".."4" as an index into A-D."""
    number = doc["correct_answer_num"]
    valid = str(number).strip() in {str(n) for n in range(1, len(BELEBELE_CHOICES) + 1)}
    if isinstance(number, bool) or not valid:
        raise DiffutronError(
            f"belebele_tr {_row(doc)}: correct_answer_num {number!r} is not one of 1, 2, 3, 4; fix the row"
        )
    return int(str(number).strip()) - 1


def irony_choices(doc: Mapping[str, Any]) -> list[str]:
    return list(IRONY_CHOICES)


def irony_target(doc: Mapping[str, Any]) -> int:
    return gold_index("ironytr", doc, IRONY_CHOICES)


def news_cat_choices(doc: Mapping[str, Any]) -> list[str]:
    return list(NEWS_CAT_CHOICES)


def news_cat_target(doc: Mapping[str, Any]) -> int:
    """An index 0-4, the hub's English name (sport, magazine, ...) or the Turkish choice itself."""
    return gold_index("news_cat", doc, NEWS_CAT_CHOICES, NEWS_CAT_LABELS)


def mnli_choices(doc: Mapping[str, Any]) -> list[str]:
    return list(MNLI_CHOICES)


def mnli_target(doc: Mapping[str, Any]) -> int:
    return gold_index("mnli_tr", doc, MNLI_CHOICES)


def mnli_labelled(dataset: Any) -> Any:
    """MNLI-TR without the pairs that have no gold label (label -1); how many were dropped is
    logged and kept for the report."""
    keep = [index for index, label in enumerate(dataset["label"]) if not _is_no_gold(label)]
    dropped = len(dataset) - len(keep)
    DROPPED_DOCUMENTS["diffutron_mnli_tr"] = dropped
    if dropped:
        logger.warning("mnli_tr: dropped %d of %d pairs without a gold label (label -1)", dropped, len(dataset))
    return dataset.select(keep) if dropped else dataset


def xcopa_target(doc: Mapping[str, Any]) -> int:
    return gold_index("xcopa_tr", doc, xcopa_choices(doc))


def gold_index(
    task: str, doc: Mapping[str, Any], choices: Sequence[str], names: Sequence[str] = (), field: str = "label"
) -> int:
    """`doc[field]` as an index into `choices`: an integer index (or its digits), a choice, or
    one of `names` (other names of the choices, in the same order); anything else is an error."""
    label = doc.get(field)
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(choices):
        return label
    if isinstance(label, str):
        text = label.strip()
        if text.isdigit() and int(text) < len(choices):
            return int(text)
        for spelling in (choices, names):
            if text in spelling:
                return list(spelling).index(text)
    allowed = [f"0-{len(choices) - 1}", "/".join(choices)] + (["/".join(names)] if names else [])
    raise DiffutronError(
        f"{task} {_row(doc)}: {field} {label!r} names no choice; a label is one of {'; '.join(allowed)}. "
        "Fix the row in the task file"
    )


def _is_no_gold(label: object) -> bool:
    return label == MNLI_NO_GOLD or (isinstance(label, str) and label.strip() == str(MNLI_NO_GOLD))


def _row(doc: Mapping[str, Any]) -> str:
    """A short name for a document in error messages: its id, or the start of its text."""
    for key in ("id", "idx", "question_number"):
        if doc.get(key) is not None:
            return f"row {key}={doc[key]!r}"
    for key in ("text", "premise", "sentence1", "flores_passage"):
        if isinstance(doc.get(key), str):
            text = doc[key] if len(doc[key]) <= 40 else doc[key][:40] + "..."
            return f"row {text!r}"
    return "row"


def exams_choices(doc: Mapping[str, Any]) -> list[str]:
    return list(doc["question"]["choices"]["text"])


def exams_target(doc: Mapping[str, Any]) -> int:
    """Index of `answerKey` among the choice labels."""
    labels = list(doc["question"]["choices"]["label"])
    key = str(doc["answerKey"]).strip()
    if key not in labels:
        raise DiffutronError(
            f"EXAMS question {doc.get('id', '?')!r}: answerKey {key!r} is not one of its labels {labels}"
        )
    return labels.index(key)


def sts_target(doc: Mapping[str, Any]) -> int:
    """The similarity score (0..5) bucketed at 0.5, 1.5, 2.5, 3.5 and 4.5."""
    score = doc.get("score")
    try:
        value = float(score) if not isinstance(score, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not 0 <= value <= STS_MAX_SCORE:  # NaN fails this too
        raise DiffutronError(f"sts_tr {_row(doc)}: score {score!r} is not a number from 0 to 5; fix the row")
    return bisect_right(STS_EDGES, value)


def xcopa_context(doc: Mapping[str, Any]) -> str:
    """The premise without its final period, then ` çünkü` (cause) or ` bu yüzden` (effect)."""
    premise = doc["premise"].strip()
    return premise.removesuffix(".") + XCOPA_CONNECTORS[doc["question"]]


def xcopa_choices(doc: Mapping[str, Any]) -> list[str]:
    return [lower_first(doc["choice1"]), lower_first(doc["choice2"])]


def lower_first(text: str) -> str:
    """Lower-case the first letter with Turkish rules (I -> ı, İ -> i), keep the rest."""
    if not text:
        return text
    first = {"I": "ı", "İ": "i"}.get(text[0], text[0].lower())
    return first + text[1:]


def macro_f1(items: Iterable[tuple[int, int]]) -> float:
    """Macro-averaged F1 of (gold, prediction) pairs: lm-eval's own `f1` is binary only."""
    from sklearn.metrics import f1_score

    golds, predictions = zip(*items)
    return float(f1_score(golds, predictions, average="macro"))
