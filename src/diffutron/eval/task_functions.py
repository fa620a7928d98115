"""Prompt pieces and metrics of the CETVEL tasks that a Jinja template cannot express cleanly.

Referenced from the task YAML files as `!function diffutron.eval.task_functions.<name>`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from typing import Any

from diffutron.errors import DiffutronError

# a score s in [0, 5] falls in bucket i when STS_EDGES[i-1] <= s < STS_EDGES[i]
STS_EDGES = (0.5, 1.5, 2.5, 3.5, 4.5)
XCOPA_CONNECTORS = {"cause": " çünkü", "effect": " bu yüzden"}


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
    return bisect_right(STS_EDGES, float(doc["score"]))


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
