"""`diffutron card`: the model card (README.md, with the Hub's metadata) written from the run.

The card goes into the model folder (RUN_DIR/final, a merged model's folder) with the run's loss
plot (loss.png). `train` and `merge-lora` write it at the end; `diffutron card` writes or refreshes
it, e.g. after an evaluation report was saved beside the model. Its first line records the options
it was written with (license, base model, repo id, the run of a merged model), so a refresh keeps
them; text given with --notes is kept too. A README.md that this command did not write is never
replaced unless --overwrite says so. Figures come from card_facts, never from typing.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from diffutron.errors import DiffutronError
from diffutron.files import atomic_file
from diffutron.model.hub_upload import CARD_NAME, PLOT_NAME, check_repo_id
from diffutron.model.loading import default_model_path
from diffutron.training import card_facts
from diffutron.training.card_facts import DataFacts, Stage
from diffutron.training.checkpoints import PREFIX
from diffutron.training.plot import plot_loss
from diffutron.training.run_dir import is_run_directory

MARKER = "<!-- diffutron-card "
NOTES_MARKER = "<!-- diffutron-card notes: the text below is kept when the card is refreshed -->"
TAGS = ("turkish", "masked-diffusion", "diffusion", "dllm", "diffutron")
PIPELINE_TAG = "fill-mask"  # what transformers runs it as; generation is the diffutron sampler's
LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
EXAMPLE_QUESTION = "Türkiye'nin başkenti neresidir?"
EMBEDDED_NAME = "diffutron-tiny-tr"  # the package's own model: its card needs no --model


@dataclass
class CardOptions:
    """What the card cannot read from the run; recorded in the card so that a refresh keeps it."""

    run: str | None = None  # the run folder, relative to the model folder
    up_to_step: int | None = None
    license: str | None = None
    base_model: str | None = None
    repo_id: str | None = None


def write_card(
    path: str | Path,
    *,
    run_dir: str | Path | None = None,
    up_to_step: int | None = None,
    license: str | None = None,
    base_model: str | None = None,
    repo_id: str | None = None,
    notes: str | Path | None = None,
    overwrite: bool = False,
) -> tuple[Path, Path | None]:
    """Write MODEL_DIR/README.md (and loss.png) for a run folder or a model folder: (card, plot or None).

    `run_dir` names the run of a model saved elsewhere (a merged adapter), `up_to_step` the step of
    the checkpoint it came from; a model folder inside a run (final/, checkpoint-N/) finds both itself.
    """
    model_dir, located_run, step = locate(Path(path), Path(run_dir) if run_dir else None)
    card_path = model_dir / CARD_NAME
    previous, kept_notes = read_previous(card_path, overwrite)
    options = CardOptions(
        run=_relative(located_run, model_dir) if located_run else previous.run,
        up_to_step=(up_to_step or step) if located_run else previous.up_to_step,
        license=_checked_license(license) or previous.license,
        base_model=_checked_repo(base_model, "--base-model") or previous.base_model,
        repo_id=_checked_repo(repo_id, "--repo-id") or previous.repo_id,
    )
    run = (model_dir / options.run).resolve() if options.run else None
    if run is not None and not is_run_directory(run):
        raise DiffutronError(f"{run} (the run this card was written from) is not a run folder; pass --run RUN_DIR")
    notes_text = _read_notes(notes) if notes is not None else kept_notes
    stages = card_facts.load_stages(run, options.up_to_step) if run else []
    has_plot = run is not None and any(record.get("loss") is not None for record in stages[-1].records)
    content = render_card(model_dir, stages, options, notes_text, has_plot=has_plot)  # all read, nothing written
    if has_plot:
        plot_loss([run], model_dir / PLOT_NAME)
    with atomic_file(card_path) as handle:
        handle.write(content)
    return card_path, model_dir / PLOT_NAME if has_plot else None


def locate(path: Path, run_dir: Path | None) -> tuple[Path, Path | None, int | None]:
    """(model folder, its run or None, the step it was saved at when it is a checkpoint)."""
    if is_run_directory(path) and not (path / "config.json").is_file():
        if not (path / "final" / "config.json").is_file():
            raise DiffutronError(f"{path} is a run without a final model yet; write the card when `train` has finished")
        return path / "final", path, None
    if not (path / "config.json").is_file():
        raise DiffutronError(
            f"{path} is neither a run folder (recipe.yaml and log.jsonl) nor a model folder (config.json); "
            "give RUN_DIR or RUN_DIR/final"
        )
    if run_dir is None and is_run_directory(path.parent):
        run_dir = path.parent
    if run_dir is not None and not is_run_directory(run_dir):
        raise DiffutronError(f"--run {run_dir} is not a run folder (recipe.yaml and log.jsonl)")
    step = path.name.removeprefix(PREFIX)
    return path, run_dir, int(step) if path.name.startswith(PREFIX) and step.isdigit() else None


def read_previous(card_path: Path, overwrite: bool) -> tuple[CardOptions, str]:
    """The options and notes of a card this command wrote; another README.md only with `overwrite`."""
    if not card_path.is_file():
        return CardOptions(), ""
    text = card_path.read_text(encoding="utf-8")
    line = next((line for line in text.splitlines() if line.startswith(MARKER)), None)
    if line is None:
        if not overwrite:
            raise DiffutronError(
                f"{card_path} was not written by `diffutron card`; it is left as it is: pass --overwrite to replace it"
            )
        return CardOptions(), ""
    try:
        recorded = json.loads(line.removeprefix(MARKER).removesuffix("-->"))
        options = CardOptions(**{key: recorded.get(key) for key in asdict(CardOptions())})
    except (ValueError, TypeError, AttributeError):
        options = CardOptions()  # a damaged first line: the card is written afresh
    notes = text.split(NOTES_MARKER, 1)[1].strip("\n") if NOTES_MARKER in text else ""
    return options, notes


def _relative(run_dir: Path, model_dir: Path) -> str:
    return Path(os.path.relpath(run_dir.resolve(), model_dir.resolve())).as_posix()


def _checked_license(license: str | None) -> str | None:
    if license is not None and not LICENSE_ID.fullmatch(license):
        raise DiffutronError(
            f"--license {license!r} is not a Hub license id; use one such as apache-2.0, mit, gpl-3.0 or other"
        )
    return license


def _checked_repo(repo_id: str | None, key: str) -> str | None:
    return check_repo_id(repo_id, key) if repo_id is not None else None


def _read_notes(notes: str | Path) -> str:
    try:
        return Path(notes).read_text(encoding="utf-8").strip("\n")
    except (OSError, UnicodeDecodeError) as error:
        raise DiffutronError(f"--notes {notes}: cannot be read ({error})") from None


# --- rendering ----------------------------------------------------------------------------------


def render_card(model_dir: Path, stages: list[Stage], options: CardOptions, notes: str, *, has_plot: bool) -> str:
    """The whole README.md: Hub metadata (checked by huggingface_hub's ModelCard) and the body."""
    from huggingface_hub import ModelCard

    data = [
        card_facts.data_facts(path) for stage in stages for path in (stage.recipe.data.train, stage.recipe.data.eval)
    ]
    data = _unique([facts for facts in data if facts is not None])
    run_folders = [stages[-1].run_dir, stages[-1].run_dir / "final"] if stages else []
    reports = card_facts.eval_reports([model_dir, *run_folders])
    model = card_facts.model_facts(model_dir)
    name, where = _identity(model_dir, options)
    sections = [
        f"{MARKER}{json.dumps(asdict(options))} -->",
        f"# {name}",
        _introduction(name, model, stages),
        _usage(where, stages, reports),
        _training(stages),
        _data(data),
        _evaluation(reports, str(model_dir)),
        f"## Training loss\n\n![Training loss per step]({PLOT_NAME})" if has_plot else "",
    ]
    body = "\n\n".join(section for section in sections if section) + "\n"
    if notes:
        body += f"\n{NOTES_MARKER}\n\n{notes}\n"
    metadata = _metadata(options, stages, data, reports)
    card = ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n{body}")  # parsed and checked as the Hub's client does
    return str(card)


def _metadata(options: CardOptions, stages: list[Stage], data: list[DataFacts], reports: dict) -> Any:
    from huggingface_hub import ModelCardData

    datasets = list(
        dict.fromkeys(source["dataset"] for facts in data for source in facts.sources() if source["dataset"])
    )
    metrics = [metric for kind, metric in METRICS.items() if reports[kind]]
    lora = any(stage.recipe.lora is not None for stage in stages)
    return ModelCardData(
        language="tr",
        license=options.license or _derived_license(stages, data),
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        base_model=options.base_model or card_facts.hub_base_model(stages),
        datasets=datasets or None,
        metrics=list(dict.fromkeys(metrics)) or None,
        tags=[*TAGS, *(["lora"] if lora else [])],
    )


METRICS = {"perplexity": "perplexity", "unigram": "perplexity", "cetvel": "accuracy", "definitions": "chrf"}


def _derived_license(stages: list[Stage], data: list[DataFacts]) -> str:
    """The base model's card's license; else the data's one license; else `other` (say it with --license)."""
    from huggingface_hub import ModelCard

    base = stages[0].recipe.model.name_or_path if stages else None
    if base and (Path(base) / CARD_NAME).is_file():
        try:
            license = ModelCard.load(Path(base) / CARD_NAME, ignore_metadata_errors=True).data.license
        except ValueError:  # its metadata block is no mapping: no license to take
            license = None
        if isinstance(license, str):
            return license
    licenses = [card_facts.hub_license(source["license"]) for facts in data for source in facts.sources()]
    if licenses and None not in licenses and len(set(licenses)) == 1:
        return str(licenses[0])
    return "other"


def _unique(data: list[DataFacts]) -> list[DataFacts]:
    seen: dict[Path, DataFacts] = {}
    for facts in data:
        seen.setdefault(Path(facts.path).resolve(), facts)
    return list(seen.values())


def _identity(model_dir: Path, options: CardOptions) -> tuple[str, str]:
    """The card's model name and what `--model` takes ("": the package's own model, no flag needed)."""
    if options.repo_id:
        return options.repo_id.split("/")[-1], options.repo_id
    resolved, embedded = model_dir.resolve(), default_model_path()
    if embedded is not None and resolved == embedded.resolve():
        return EMBEDDED_NAME, ""
    return (resolved.parent.name if resolved.name == "final" else resolved.name), str(model_dir)


def _introduction(name: str, model: dict[str, Any], stages: list[Stage]) -> str:
    if not stages:
        kind = "No training run was found beside it, so this card describes the weights alone."
    elif stages[-1].recipe.task == "sft":
        kind = "It is instruction-tuned: it answers prompts in the chat format (`[Question]` ... `[Answer]`)."
    else:
        kind = "It is pretrained (not instruction-tuned): it completes and infills Turkish text."
    return (
        f"{name} is a Turkish masked diffusion language model (MDLM) trained with Diffutron. It writes text by "
        f"unmasking a canvas of mask tokens over a number of steps. {kind}\n\n"
        f"- `{model['architecture']}` (loaded by transformers without custom code), {model['parameters']:,} "
        f"parameters: hidden size {model['hidden_size']}, {model['num_hidden_layers']} layers, "
        f"{model['num_attention_heads']} attention heads, intermediate size {model['intermediate_size']}, "
        f"context {model['max_position_embeddings']} tokens, vocabulary {model['vocab_size']:,}."
    )


def _usage(where: str, stages: list[Stage], reports: dict) -> str:
    from diffutron.sampling.config import GenerationConfig

    pretrain = bool(stages) and stages[-1].recipe.task == "pretrain"
    example = 'lm.infill("Kitap okumak insanın [MASK] genişletir.")' if pretrain else f'lm.chat("{EXAMPLE_QUESTION}")'
    evaluated = [
        report.get("sampler") for _, report in reports["definitions"] if isinstance(report.get("sampler"), dict)
    ]
    sampler = evaluated[0] if evaluated else asdict(GenerationConfig())
    source = "used in the evaluation below" if evaluated else "the defaults of `diffutron chat` and `generate`"
    keys = ("max_new_tokens", "steps", "block_length", "temperature", "repetition_penalty", "remasking")
    rows = "\n".join(f"| `{key}` | {sampler.get(key)} |" for key in keys)
    flag, argument = (f" --model {where}", f'"{where}"') if where else ("", "")
    return (
        "## Use\n\n"
        f"```bash\npip install diffutron\ndiffutron chat{flag}\ndiffutron serve{flag}\n```\n\n"
        "```python\nfrom diffutron import Diffutron\n\n"
        f"lm = Diffutron.from_pretrained({argument})\nprint({example})\n```\n\n"
        f"Sampler settings ({source}):\n\n| setting | value |\n|---|---|\n{rows}"
    )


def _training(stages: list[Stage]) -> str:
    if not stages:
        return ""
    rows = [
        f"| {index} | {stage.run_dir.name} | {_task(stage)} | {stage.recipe.model.name_or_path or 'from scratch'} | "
        f"{stage.steps:,} | {stage.global_batch} | {_count(stage.tokens)} | {stage.recipe.optimizer.lr:g} | "
        f"{format_duration(stage.seconds)} |"
        for index, stage in enumerate(stages, start=1)
    ]
    table = (
        "| stage | run | task | starts from | steps | rows per step | tokens seen | learning rate | time |\n"
        "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    )
    last = stages[-1]
    return (
        "## Training\n\n"
        "Each stage is one `diffutron train` run; tokens seen are the non-padding input tokens, and time is "
        "the logged training steps' (both from the run's log.jsonl).\n\n"
        f"{table}\n\n{_run_details(last)}\n\n"
        f"<details><summary>recipe.yaml of {last.run_dir.name}</summary>\n\n"
        f"```yaml\n{last.recipe_text.strip()}\n```\n\n</details>"
    )


def _task(stage: Stage) -> str:
    name = {"pretrain": "pretraining", "sft": "SFT"}[stage.recipe.task]
    lora = stage.recipe.lora
    return f"{name}, LoRA r={lora.r}" if lora is not None else f"{name}, full"


def _run_details(stage: Stage) -> str:
    recipe, objective, optimizer = stage.recipe, stage.recipe.objective, stage.recipe.optimizer
    counts = stage.info.get("parameters")
    if counts is None:
        trained = "all parameters" if recipe.lora is None else "LoRA adapters (counts not recorded)"
    else:
        share = 100 * counts["trainable"] / counts["total"]
        trained = f"{counts['trainable']:,} of {counts['total']:,} parameters ({share:.2f}%)"
    if recipe.lora is not None:
        lora = recipe.lora
        trained += (
            f": LoRA r={lora.r}, alpha={lora.alpha}, dropout {lora.dropout:g} on {', '.join(lora.target_modules)}, "
            "merged into the weights"
        )
    losses = [record for record in stage.records if record.get("loss") is not None]
    last_loss = f"{losses[-1]['loss']:.4f} at step {losses[-1]['step']:,}" if losses else "not logged"
    hardware = "; ".join(stage.hardware) or "not recorded"
    return "\n".join(
        [
            f"- Trained: {trained}.",
            f"- Objective: MDLM, {objective.schedule} schedule, {objective.weighting} weighting, "
            f"{objective.normalization} normalization.",
            f"- Optimizer: {optimizer.name}, learning rate {optimizer.lr:g} ({optimizer.schedule}, "
            f"warm-up {optimizer.warmup:g}), weight decay {optimizer.weight_decay:g}.",
            f"- Steps: {stage.steps:,} of {stage.global_batch} rows, max length {recipe.training.max_length}; "
            f"tokens seen {_count(stage.tokens)}; last logged training loss {last_loss}.",
            f"- Time: {format_duration(stage.seconds)} of training steps; hardware: {hardware}.",
        ]
    )


def _data(data: list[DataFacts]) -> str:
    if not data:
        return ""
    rows, totals = [], []
    for facts in data:
        if facts.manifest is None:
            totals.append(f"- `{facts.path}`: its manifest is not here, so its sources are not listed.")
            continue
        statistics = facts.manifest.get("statistics", {})
        packed = ", packed" if facts.manifest.get("packing") else ""
        totals.append(
            f"- `{facts.path}` ({facts.manifest.get('kind')}): {_count(statistics.get('rows'))} rows, "
            f"{_count(statistics.get('tokens'))} tokens, max length {facts.manifest.get('max_length')}{packed}."
        )
        for source in facts.sources():
            rows.append(
                f"| {source['name']} | {source['origin']} | {source['license'] or 'see its source'} | "
                f"{_count(source['kept'])} | {_count(source['tokens'])} |"
            )
    table = "| source | origin | license | rows kept | tokens |\n|---|---|---|---|---|\n" + "\n".join(rows)
    return (
        "## Data\n\nFrom the manifests of the prepared data directories:\n\n"
        + "\n".join(totals)
        + (f"\n\n{table}" if rows else "")
    )


def _evaluation(reports: dict[str, list[tuple[str, dict[str, Any]]]], model_dir: str) -> str:
    parts = [
        _perplexity_table(reports["perplexity"], reports["unigram"]),
        _cetvel_tables(reports["cetvel"]),
        _definitions_table(reports["definitions"]),
    ]
    found = "\n\n".join(part for part in parts if part)
    if not found:
        found = (
            "No evaluation report was found beside the model. Save one with `diffutron eval ppl --data FILE "
            f"--model {model_dir} --output {model_dir}/eval-ppl.json` (or `eval cetvel ... --output`) and refresh "
            f"this card with `diffutron card {model_dir}`."
        )
    return "## Evaluation\n\n" + found


def _perplexity_table(perplexity: list, unigram: list) -> str:
    rows = []
    for name, report in perplexity:
        low, high = report["interval"]
        settings = report.get("settings", {})
        rows.append(
            f"| {report.get('data', name)} | model | {settings.get('mlm_probability', '')} | {report['tokens']:,} | "
            f"{report['perplexity']:.2f} ({report.get('confidence', 0.95):.0%} interval {low:.2f}-{high:.2f}) |"
        )
    for name, report in unigram:
        settings = report.get("settings", {})
        rows.append(
            f"| {report.get('data', name)} | unigram baseline | {settings.get('mlm_probability', '')} | "
            f"{report['tokens']:,} | {report['perplexity']:.2f} |"
        )
    if not rows:
        return ""
    return (
        "MLM pseudo-perplexity (exp of the mean cross-entropy at the masked positions):\n\n"
        "| data | scored by | masked share | tokens scored | perplexity |\n|---|---|---|---|---|\n" + "\n".join(rows)
    )


def _cetvel_tables(reports: list) -> str:
    tables = []
    for name, report in reports:
        rows = [
            f"| {row['title']} | {row['score']:.2f} | {row['chance']:.2f} | {row['majority']:.2f} | {row['n']:,} |"
            for row in report["tasks"]
        ]
        rows.append(
            f"| **Average** | **{report['average']:.2f}** | {report.get('average_chance', 0):.2f} | "
            f"{report.get('average_majority', 0):.2f} | |"
        )
        tables.append(
            f"CETVEL subset (0-shot likelihood, accuracy in %; {name}):\n\n"
            "| benchmark | accuracy | chance | majority class | n |\n|---|---|---|---|---|\n" + "\n".join(rows)
        )
    return "\n\n".join(tables)


def _definitions_table(reports: list) -> str:
    tables = []
    for name, report in reports:
        rows = [
            f"| {split} | {scores['chrf']:.1f} | {scores.get('questions', '')} | {scores.get('empty_answers', '')} |"
            for split, scores in report["splits"].items()
        ]
        tables.append(
            f"Definition questions, chrF against the reference definitions ({name}):\n\n"
            "| split | chrF | questions | empty answers |\n|---|---|---|---|\n" + "\n".join(rows)
        )
    return "\n\n".join(tables)


def _count(value: int | None) -> str:
    return f"{value:,}" if isinstance(value, int) else "not logged"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "not logged"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
