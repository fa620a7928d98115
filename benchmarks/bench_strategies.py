"""Commit strategies side by side on one trained model: model calls against agreement with `exact`.

For each strategy over a small sweep of its knob, and for the presets `exact`, `fast` and `fastest`
as they are, on definition questions (chat prompts, with reference definitions) and plain-text
continuations (the first tokens of a held-out text, the next ones as the reference), greedy:

- model calls per answer (the calls in which the row was still at work) and seconds per answer,
- agreement with `exact`: the share of identical answers and chrF against the exact answer,
- chrF against the reference,
- the answer's MDLM log-likelihood under the model per answer token (`eval/likelihood.py`,
  float32 model, `--mc-num` mask sets per answer, the same seed for every run).

The strategies run in the `fast` preset's setting (its block cache and CPU precision) with only the
commit rule changed, so they compare with `fast`'s rule like for like. Prompts are decoded in
batches of `--batch` (rows of a batch decode as they would alone in float32; seconds per answer is
the batch's wall clock over its rows).

    python benchmarks/bench_strategies.py --questions eval.jsonl --texts heldout.jsonl \\
        [--model DIR] [--limit-questions 200] [--limit-texts 100] [--threads 1] \\
        [--output strategies.json] [--figure docs/images/strategies.png]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from bench_fast_generation import GREEDY, precision_variants, preset_dtypes

from diffutron import Diffutron, GenerationConfig, sample
from diffutron.data.readers import iter_jsonl
from diffutron.embedded.definitions import chrf, read_questions
from diffutron.eval.likelihood import ContinuationScorer
from diffutron.files import atomic_file
from diffutron.model.chat import ANSWER_END, render_chat
from diffutron.model.loading import default_model_path
from diffutron.sampling.presets import SPEEDS, speed_config

PROMPT_TOKENS = 24  # of a plain text: the context its continuation is generated from
# (name, family, commit-rule settings): each runs in the `fast` preset's cache and precision
STRATEGIES: list[tuple[str, str, dict[str, Any]]] = [
    *[(f"margin>={t}", "confidence", {"confidence": "margin", "threshold": t}) for t in (0.9, 0.7)],
    *[(f"EB γ={g}", "entropy_bound", {"entropy_bound": g}) for g in (1.0, 3.0)],
    *[(f"early gap={g}", "early_commit", {"commit_gap": g}) for g in (0.05,)],
    *[(f"dilated B={b}", "dilated", {"rule": "dilated", "block_length": b}) for b in (32,)],
    ("revocable 0.7/0.9", "revocable", {"draft_threshold": 0.7, "revoke_below": 0.9}),
]


@dataclass
class Task:
    """One prompt set: token ids, the reference text, and what ends an answer."""

    name: str
    prompts: list[list[int]]
    references: list[str]
    stop_texts: tuple[str, ...]


@dataclass
class Run:
    answers: list[str]
    tokens: list[list[int]]
    calls: list[int]
    seconds: float


def question_task(lm: Diffutron, path: Path, limit: int) -> Task:
    questions = read_questions(path)[:limit]
    prompts = [lm.encode(render_chat(q["question"])) for q in questions]
    return Task("questions", prompts, [q["definition"] for q in questions], (ANSWER_END,))


def text_task(lm: Diffutron, path: Path, limit: int, new_tokens: int) -> Task:
    """The first `PROMPT_TOKENS` tokens of each text long enough to have a reference continuation."""
    prompts, references = [], []
    for _, record in iter_jsonl(path):
        ids = lm.encode(record["text"])
        if len(ids) >= PROMPT_TOKENS + new_tokens // 2:
            prompts.append(ids[:PROMPT_TOKENS])
            references.append(lm.tokenizer.decode(ids[PROMPT_TOKENS : PROMPT_TOKENS + new_tokens]))
        if len(prompts) == limit:
            break
    return Task("texts", prompts, references, ())


def decode(lm: Diffutron, model: torch.nn.Module, task: Task, config: GenerationConfig, batch: int) -> Run:
    """Every prompt of `task`, `batch` rows at a time; a row's calls are those until it was finished."""
    run = Run([], [], [], 0.0)
    for start in range(0, len(task.prompts), batch):
        prompts = task.prompts[start : start + batch]
        finished_at: dict[int, int] = {}

        def record(event: Any, finished_at: dict[int, int] = finished_at) -> None:
            for row, done in enumerate(event.finished.tolist()):
                finished_at.setdefault(row, event.calls) if done else None

        began = time.perf_counter()
        canvas = sample(model, lm.tokenizer, prompts, config, stop_texts=task.stop_texts, callback=record)
        run.seconds += time.perf_counter() - began
        for row, prompt in enumerate(prompts):
            tokens = canvas[row].tolist()
            run.answers.append(lm.answer(tokens, len(prompt)))
            run.tokens.append(answer_tokens(lm, tokens, len(prompt)))
            run.calls.append(finished_at.get(row, max(finished_at.values(), default=0)))
    return run


def answer_tokens(lm: Diffutron, row: list[int], prompt_length: int) -> list[int]:
    ends = {lm.special.mask, *lm.special.stops}
    tokens = row[prompt_length:]
    return next((tokens[:i] for i, token in enumerate(tokens) if token in ends), tokens)


def summary(run: Run, exact: Run, task: Task, scorer: ContinuationScorer) -> dict[str, Any]:
    pairs = [scorer.fit(prompt, tokens) for prompt, tokens in zip(task.prompts, run.tokens, strict=True) if tokens]
    scores = scorer.score(pairs)
    return {
        "calls_per_answer": round(statistics.mean(run.calls), 2),
        "seconds_per_answer": round(run.seconds / len(run.calls), 4),
        "identical_to_exact": round(sum(a == b for a, b in zip(run.tokens, exact.tokens)) / len(run.tokens), 3),
        "chrf_vs_exact": round(chrf(run.answers, exact.answers), 2),
        "chrf_vs_reference": round(chrf(run.answers, task.references), 2),
        "loglik_per_token": round(
            statistics.mean(s.logprob / len(p.continuation) for s, p in zip(scores, pairs, strict=True)), 3
        ),
    }


def settings(lm: Diffutron) -> list[tuple[str, str, torch.nn.Module, GenerationConfig]]:
    """(name, family, model, config): the presets as they are, then the strategies in `fast`'s setting."""
    dtypes = preset_dtypes()
    variants = precision_variants(lm.model, set(dtypes.values()))
    rows = [(speed, "preset", variants[dtypes[speed]], speed_config(speed, GREEDY)) for speed in SPEEDS]
    fast = speed_config("fast", GREEDY)
    for name, family, changes in STRATEGIES:
        rows.append((name, family, variants[dtypes["fast"]], speed_config("fast", GREEDY, **changes)))
    assert fast.cache == "dual"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=Path, help="definition questions (eval.jsonl); needed unless --merge")
    parser.add_argument("--texts", type=Path, help="held-out plain texts (heldout.jsonl); needed unless --merge")
    parser.add_argument("--model", default=None, help="model directory (default: the embedded model)")
    parser.add_argument("--limit-questions", type=int, default=200)
    parser.add_argument("--limit-texts", type=int, default=100)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--mc-num", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None, help="names of the settings to run (exact always runs)")
    parser.add_argument("--exact-runs", type=Path, default=None, help="exact's answers: read if present, else written")
    parser.add_argument("--merge", type=Path, nargs="*", default=None, help="only merge these outputs (runs in parts)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    if args.merge:
        finish(merged([json.loads(path.read_text()) for path in args.merge]), args.output, args.figure)
        return
    if args.questions is None or args.texts is None:
        parser.error("--questions and --texts are required (only --merge goes without them)")
    torch.set_num_threads(args.threads)
    lm = Diffutron.from_pretrained(args.model)
    tasks = [
        question_task(lm, args.questions, args.limit_questions),
        text_task(lm, args.texts, args.limit_texts, args.new_tokens),
    ]
    scorer = ContinuationScorer(lm.model, lm.tokenizer, mc_num=args.mc_num, batch_size=64, seed=0)
    results: dict[str, Any] = {"model_sha256": model_sha256(args.model), "threads": args.threads, "tasks": {}}
    chosen = [row for row in settings(lm) if args.only is None or row[0] in args.only]
    exact_runs = exact_answers(lm, tasks, args)
    for task in tasks:
        exact = exact_runs[task.name]
        table: dict[str, Any] = {}
        for name, family, model, config in chosen:
            new = config.replace(max_new_tokens=args.new_tokens)
            run = exact if name == "exact" else decode(lm, model, task, new, args.batch)
            table[name] = {"family": family, **summary(run, exact, task, scorer)}
            print(task.name, name, table[name], flush=True)
        results["tasks"][task.name] = {"prompts": len(task.prompts), "table": table}
    finish(results, args.output, args.figure)


def exact_answers(lm: Diffutron, tasks: list[Task], args: argparse.Namespace) -> dict[str, Run]:
    """`exact`'s answers to every task: read from `--exact-runs` if there, else decoded (and written there)."""
    if args.exact_runs and args.exact_runs.is_file():
        return {name: Run(**run) for name, run in json.loads(args.exact_runs.read_text()).items()}
    _, _, model, config = settings(lm)[0]
    runs = {
        task.name: decode(lm, model, task, config.replace(max_new_tokens=args.new_tokens), args.batch) for task in tasks
    }
    if args.exact_runs:
        with atomic_file(args.exact_runs) as handle:
            json.dump({name: asdict(run) for name, run in runs.items()}, handle)
    return runs


def merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Outputs of runs over parts of the settings, as one (their tables in the order given)."""
    result = {**parts[0], "tasks": {}}
    for name, task in parts[0]["tasks"].items():
        table = {key: row for part in parts for key, row in part["tasks"][name]["table"].items()}
        result["tasks"][name] = {"prompts": task["prompts"], "table": table}
    return result


def finish(results: dict[str, Any], output: Path | None, figure: Path | None) -> None:
    print(markdown(results))
    if output:
        with atomic_file(output) as handle:
            json.dump(results, handle, indent=2, ensure_ascii=False)
    if figure:
        draw(results, figure)


def model_sha256(model: str | None) -> str:
    path = Path(model) if model else default_model_path()
    assert path is not None, "no embedded model in this installation: give --model"
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def markdown(results: dict[str, Any]) -> str:
    """One table: each setting's figures on the questions, then on the texts."""
    tasks = results["tasks"]
    names = list(next(iter(tasks.values()))["table"])
    lines = [
        "| setting | "
        + " | ".join(f"{t}: calls / s / identical / chrF vs exact / chrF vs ref / loglik" for t in tasks)
        + " |",
        "|---|" + "---|" * len(tasks),
    ]
    for name in names:
        cells = []
        for task in tasks.values():
            row = task["table"][name]
            cells.append(
                f"{row['calls_per_answer']:.1f} / {row['seconds_per_answer']:.3f} / {row['identical_to_exact']:.2f} / "
                f"{row['chrf_vs_exact']:.1f} / {row['chrf_vs_reference']:.1f} / {row['loglik_per_token']:.2f}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw(results: dict[str, Any], path: Path) -> None:
    """Calls per answer against chrF vs exact, one panel per prompt set, the Pareto front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = results["tasks"]
    figure, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.8))
    families = sorted({row["family"] for task in tasks.values() for row in task["table"].values()})
    colours = dict(zip(families, plt.get_cmap("tab10").colors, strict=False))
    for axis, (task_name, task) in zip(axes, tasks.items(), strict=True):
        points = [(row["calls_per_answer"], row["chrf_vs_exact"], name, row) for name, row in task["table"].items()]
        placed: list[tuple[float, float]] = []  # (calls, label height): close labels stacked downwards
        for calls, score, name, row in sorted(points, key=lambda point: -point[1]):
            marker = "s" if row["family"] == "preset" else "o"
            axis.scatter(calls, score, color=colours[row["family"]], marker=marker, s=40)
            height = min([score, *(y - 3.5 for c, y in placed if abs(calls - c) < 4 and y - 3.5 < score + 3.5)])
            axis.annotate(name, (calls, score), (calls + 0.4, height + 0.8), fontsize=7)
            placed.append((calls, height))
        front = pareto([(calls, score) for calls, score, _, _ in points])
        axis.plot(*zip(*front, strict=True), color="grey", linestyle="--", linewidth=1)
        axis.set(xlabel="model calls per answer", ylabel="chrF against exact", title=f"{task_name} ({task['prompts']})")
        axis.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colours[f], marker="o", linestyle="", label=f) for f in families]
    figure.legend(handles=handles, loc="lower center", ncol=len(families), fontsize=8)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb", encoding=None) as handle:
        figure.savefig(handle, format="png", dpi=110)


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (fewer calls, higher chrF), by calls."""
    front: list[tuple[float, float]] = []
    for calls, score in sorted(points, key=lambda point: (point[0], -point[1])):
        if not front or score > front[-1][1]:
            front.append((calls, score))
    return front


if __name__ == "__main__":
    main()
