"""What a model card says, read from the files a run leaves: nothing is typed in by hand.

recipe.yaml (the recipe), log.jsonl (steps, tokens seen, time), run.json (the machine and the
parameter counts, which the log does not hold; written at the end of `train`), the manifests of
the data directories the recipe names, config.json and the safetensors headers (the model), and
the evaluation reports (`diffutron eval ... --output FILE.json`) in the model or run folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from diffutron.errors import DiffutronError
from diffutron.files import atomic_file, is_local_path, read_json_object
from diffutron.training.callbacks import LOG_NAME, read_log
from diffutron.training.config import Recipe, load_training_recipe
from diffutron.training.run_dir import RECIPE_NAME, is_run_directory

logger = logging.getLogger(__name__)

RUN_INFO = "run.json"
MAX_STAGES = 16  # a chain of runs, each fine-tuning the previous one's final model
# JSON files of a model or run folder that are no evaluation report
NOT_REPORTS = frozenset(
    (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "adapter_config.json",
        "model.safetensors.index.json",
        RUN_INFO,
    )
)


# --- what `train` records for the card ----------------------------------------------------------


def record_session(run_dir: Path, *, started: datetime, steps: tuple[int, int], args: Any, parameters: tuple) -> None:
    """Add this `train` command's machine and step range to RUN_DIR/run.json (atomically)."""
    path = run_dir / RUN_INFO
    try:
        info = read_json_object(path) if path.is_file() else {}
    except DiffutronError as error:  # the model is saved by now: a damaged record must not fail the run
        logger.warning("%s; it is written afresh", error)
        info = {}
    session = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "steps": list(steps),
        "processes": int(args.world_size),
        "device": device_name(args.device),
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
    }
    info["parameters"] = {"trainable": int(parameters[0]), "total": int(parameters[1])}
    info["sessions"] = [*info.get("sessions", []), session]
    with atomic_file(path) as handle:
        json.dump(info, handle, indent=2)
        handle.write("\n")


def device_name(device: Any) -> str:
    """The accelerator's product name, or the CPU's architecture and core count."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return device.type
    return f"CPU ({platform.machine() or 'unknown'}, {os.cpu_count()} cores)"


# --- one run ------------------------------------------------------------------------------------


@dataclass
class Stage:
    """One `train` run in the model's history, its log cut at `up_to_step` (a checkpoint's step)."""

    run_dir: Path
    recipe: Recipe
    recipe_text: str
    records: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return max((record["step"] for record in self.records), default=0)

    @property
    def tokens(self) -> int | None:
        counted = [record["tokens"] for record in self.records if isinstance(record.get("tokens"), int)]
        return counted[-1] if counted else None

    @property
    def seconds(self) -> float | None:
        """Time of the logged steps: each record's new tokens over its tokens per second, summed."""
        total, previous, known = 0.0, 0, False
        for record in self.records:
            tokens, speed = record.get("tokens"), record.get("tokens_per_second")
            if not isinstance(tokens, int):
                continue
            if isinstance(speed, (int, float)) and speed > 0 and math.isfinite(speed):
                total, known = total + (tokens - previous) / speed, True
            previous = tokens
        return total if known else None

    @property
    def global_batch(self) -> str:
        """Rows per optimizer step; per process when run.json does not say how many processes ran."""
        training = self.recipe.training
        rows = training.batch_size * training.gradient_accumulation
        sessions = self.info.get("sessions", [])
        if not sessions:
            return f"{rows} per process"
        return f"{rows * max(session['processes'] for session in sessions)}"

    @property
    def hardware(self) -> list[str]:
        """Distinct machines of the run's sessions, e.g. '2 x NVIDIA H100 80GB HBM3, bf16'."""
        seen = [
            f"{session['processes']} x {session['device']}, {session['precision']}"
            for session in self.info.get("sessions", [])
        ]
        return list(dict.fromkeys(seen))


def load_stage(run_dir: Path, up_to_step: int | None = None) -> Stage:
    recipe_path = run_dir / RECIPE_NAME
    try:
        recipe = load_training_recipe(recipe_path)
    except DiffutronError as error:
        raise DiffutronError(f"the run's recipe cannot be read: {error}") from None
    records = [record for record in read_log(run_dir / LOG_NAME) if up_to_step is None or record["step"] <= up_to_step]
    info_path = run_dir / RUN_INFO
    info = read_json_object(info_path, "delete it to write the card without it") if info_path.is_file() else {}
    return Stage(run_dir, recipe, recipe_path.read_text(encoding="utf-8"), records, info)


def load_stages(run_dir: Path, up_to_step: int | None = None) -> list[Stage]:
    """The run and, oldest first, the runs whose final model it continued from (model.name_or_path)."""
    stages = [load_stage(run_dir, up_to_step)]
    while len(stages) < MAX_STAGES:
        base = stages[0].recipe.model.name_or_path
        parent = Path(base).parent if base and Path(base).is_dir() else None
        if (
            parent is None
            or not is_run_directory(parent)
            or any(stage.run_dir.resolve() == parent.resolve() for stage in stages)
        ):
            break
        stages.insert(0, load_stage(parent))
    return stages


def hub_base_model(stages: list[Stage]) -> str | None:
    """The first model of the history that is a Hub id (the local ones cannot be named on the Hub)."""
    base = stages[0].recipe.model.name_or_path if stages else None
    return base if base and not is_local_path(base) else None


# --- the model's weights ------------------------------------------------------------------------


def model_facts(model_dir: Path) -> dict[str, Any]:
    """config.json's sizes and the parameter count of the safetensors headers (no weights are read)."""
    from safetensors import safe_open

    config = read_json_object(model_dir / "config.json")
    parameters = 0
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as weights:
            parameters += sum(math.prod(weights.get_slice(key).get_shape()) for key in weights.keys())
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_position_embeddings")
    return {
        "architecture": (config.get("architectures") or [config.get("model_type", "unknown")])[0],
        "parameters": parameters,
        **{key: config.get(key) for key in (*keys, "vocab_size")},
    }


# --- data ---------------------------------------------------------------------------------------


@dataclass
class DataFacts:
    """A prepared data directory as its manifest describes it (None: the directory is not here)."""

    path: str
    manifest: dict[str, Any] | None

    def sources(self) -> list[dict[str, Any]]:
        """Each source: name, origin, license, rows kept and tokens in the data."""
        if self.manifest is None:
            return []
        recipe_sources = {source.get("name"): source for source in self.manifest.get("recipe", {}).get("sources", [])}
        rows = []
        for name, counts in self.manifest.get("sources", {}).items():
            recipe_source = recipe_sources.get(name, {})
            rows.append(
                {
                    "name": name,
                    "origin": counts.get("origin", ""),
                    "dataset": recipe_source.get("dataset"),
                    "license": source_license(recipe_source),
                    "kept": counts.get("in_corpus", counts.get("kept")),
                    "tokens": counts.get("tokens_in_corpus", counts.get("tokens")),
                }
            )
        return rows


def data_facts(path: str | None) -> DataFacts | None:
    if not path:
        return None
    manifest = Path(path) / "manifest.json"
    return DataFacts(path, read_json_object(manifest) if manifest.is_file() else None)


def source_license(source: dict[str, Any]) -> str | None:
    """A local source's license, as the manifest of the folder it was read from records it.

    `diffutron embedded offline-corpus` records one per source, `kenet-sft` one for all; Hub
    datasets carry theirs on their own card, which is not read here (no network).
    """
    if not source.get("path"):
        return None
    manifest = Path(source["path"]).parent / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(recorded.get("license"), str):
        return recorded["license"]
    licenses = [entry.get("license") for entry in recorded.get("sources", []) if isinstance(entry, dict)]
    known = list(dict.fromkeys(license for license in licenses if isinstance(license, str)))
    return ", ".join(known) or None


def hub_license(text: str | None) -> str | None:
    """The Hub license id of one recorded license ("GPL-3.0 (derived from ...)" -> gpl-3.0), if it is SPDX.

    A list of several licenses ("GPL-3.0, MIT") is no single license: None.
    """
    from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

    name = (text or "").split("(", 1)[0].strip()
    if not name or " " in name:  # an expression of several ("MIT OR Apache-2.0") is no single Hub id
        return None
    try:
        return canonicalize_license_expression(name).lower()
    except InvalidLicenseExpression:
        return None


# --- evaluation reports -------------------------------------------------------------------------

REPORT_KINDS = ("perplexity", "unigram", "cetvel", "definitions")


def report_kind(report: dict[str, Any]) -> str | None:
    """Which `diffutron eval` / `embedded` command wrote this JSON, by its fields; None: no report."""
    numbers = {"perplexity", "cross_entropy", "tokens"}
    if numbers <= report.keys() and "training_tokens" in report:
        return "unigram"
    if numbers <= report.keys() and "interval" in report:
        return "perplexity"
    if isinstance(report.get("tasks"), list) and "average" in report:
        return "cetvel"
    splits = report.get("splits")
    if isinstance(splits, dict) and splits and all(isinstance(s, dict) and "chrf" in s for s in splits.values()):
        return "definitions"
    return None


def eval_reports(folders: list[Path]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """{kind: [(file name, report), ...]} of the evaluation reports in `folders` (by name, each once)."""
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {kind: [] for kind in REPORT_KINDS}
    seen: set[Path] = set()
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            if path.name in NOT_REPORTS or path.resolve() in seen:
                continue
            seen.add(path.resolve())
            try:
                report = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # not ours to judge: only reports are read
            kind = report_kind(report) if isinstance(report, dict) else None
            if kind is not None:
                found[kind].append((path.name, report))
    return found
