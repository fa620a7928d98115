"""Evaluation results as tables in the layout of the paper, and as JSON files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from diffutron.files import atomic_file


def cetvel_table(report: dict[str, Any], model_name: str) -> Table:
    """The paper's Table 4 layout (task rows, score column, average row) with the chance and
    majority-class baselines, the extra metrics and the paper's 2nd-stage score beside it.
    `model_name` (a path) is shown literally, not read as rich markup."""
    table = Table(title="CETVEL subset (0-shot, likelihood; accuracy in %)")
    table.add_column("Benchmark")
    table.add_column(Text(model_name), justify="right", style="bold")
    for column in ("Chance", "Majority", "acc_norm", "F1", "n", "Paper"):
        table.add_column(column, justify="right")
    for row in report["tasks"]:
        metrics = row["metrics"]
        table.add_row(
            row["title"],
            f"{row['score']:.2f}",
            f"{row['chance']:.2f}",
            f"{row['majority']:.2f}",
            _percent(metrics.get("acc_norm")),
            _percent(metrics.get("f1")),
            str(row["n"]),
            f"{row['paper']:.2f}",
        )
    paper_average = report["paper_average"]
    table.add_section()
    table.add_row(
        "Average",
        f"{report['average']:.2f}",
        f"{report['average_chance']:.2f}",
        f"{report['average_majority']:.2f}",
        "",
        "",
        "",
        f"{paper_average:.2f}" if paper_average is not None else "",
    )
    return table


def perplexity_table(result: dict[str, Any]) -> Table:
    table = Table(show_header=False, title="MLM perplexity")
    low, high = result["interval"]
    rows = {
        "perplexity": f"{result['perplexity']:.4f}",
        f"{result['confidence']:.0%} bootstrap interval": f"{low:.4f} .. {high:.4f}",
        "mean cross-entropy (nats)": f"{result['cross_entropy']:.4f}",
        "tokens scored": f"{result['tokens']:,}",
        "documents / sequences scored": f"{result['documents']:,} / {result['sequences']:,}",
    }
    for key, value in rows.items():
        table.add_row(key, value)
    return table


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    with atomic_file(path) as handle:
        json.dump(payload, handle, ensure_ascii=False, indent=2)
        handle.write("\n")


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"
