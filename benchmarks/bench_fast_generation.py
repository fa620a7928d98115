"""Speed presets (exact, fast, fastest) against the reference sampler loop (the oracle), in one run.

Part 1 -- calls, quality and wall clock on a trained model (the embedded model by default):
greedy answers (temperature 0, otherwise the model card's settings) to definition questions,
one question at a time, for the oracle and every preset at 64 and 128 new tokens. Reports model
calls per answer, chrF against the reference definitions, token agreement with the exact
preset's answers, and seconds per answer (the direct wall-clock speed-up).

Part 2 -- seconds per model call on a randomly initialised model of mmBERT-base's exact shape
(307.8M parameters, built locally). Random weights give meaningless confidences, so parallel
decoding cannot be judged there: each preset runs with its cache and precision and commits
on the count schedule, with as many calls per block as Part 1 measured for it, so that the mix
of cache refreshes and cached calls is the trained model's. The oracle's cost per call does not
depend on how many calls it makes. Projected speed-up for the 307M model =
(oracle seconds per call x oracle calls) / (preset seconds per call x preset calls per answer).

    python benchmarks/bench_fast_generation.py --questions eval.jsonl [--model DIR] [--limit 20]
        [--threads 1 2] [--repeats 2] [--sweep] [--techniques] [--output results.json]

Part 1 runs with one thread (`--quality-threads`): on a shared 2-core machine, two OpenMP threads
make every small operation wait for the busier core. Part 2 reports the minimum over `--repeats`
interleaved runs for the same reason.

`--sweep` first measures candidate settings (rules, caches, precisions) on the trained model,
and `--techniques` times every precision with every cache on the 307M model: the evidence the
presets' defaults were chosen from.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffutron import Diffutron, GenerationConfig, sample
from diffutron.embedded.definitions import chrf, read_questions
from diffutron.files import atomic_file
from diffutron.model.chat import render_chat
from diffutron.model.precision import cpu_bfloat16_supported, quantize_int8
from diffutron.sampling.presets import SPEEDS, speed_config, speed_dtype
from diffutron.sampling.reference import reference_sample
from workloads import MMBERT_BASE, mmbert_shaped_model, tokenizer_with_mmbert_ids

GREEDY = GenerationConfig(temperature=0.0)  # the model card's settings, without sampling noise
SHAPES = [(30, 64), (30, 128), (256, 64), (256, 128)]  # (prompt tokens, new tokens)
ORACLE = "oracle"


@dataclass
class Run:
    """One sampler over all questions."""

    answers: list[str]
    tokens: list[list[int]]
    calls: list[int]
    blocks: list[int]  # blocks in which at least one call happened
    seconds: list[float]

    def summary(self, questions: list[dict[str, str]], exact: Run | None) -> dict[str, Any]:
        result = {
            "chrf": round(chrf(self.answers, [q["definition"] for q in questions]), 2),
            "calls_per_answer": round(statistics.mean(self.calls), 2),
            "calls_per_block": round(sum(self.calls) / sum(self.blocks), 2),
            "seconds_per_answer": round(statistics.mean(self.seconds), 4),
        }
        for split in sorted({q["split"] for q in questions}):
            chosen = [i for i, q in enumerate(questions) if q["split"] == split]
            result[f"chrf_{split}"] = round(
                chrf([self.answers[i] for i in chosen], [questions[i]["definition"] for i in chosen]), 2
            )
        if exact is not None:
            result["token_agreement"] = round(_agreement(self.tokens, exact.tokens), 4)
            result["identical_answers"] = sum(a == b for a, b in zip(self.tokens, exact.tokens))
        return result


def _agreement(tokens: list[list[int]], reference: list[list[int]]) -> float:
    """Share of answer positions holding the same token (the longer answer sets the length)."""
    same = sum(sum(a == b for a, b in zip(x, y)) for x, y in zip(tokens, reference))
    total = sum(max(len(x), len(y), 1) for x, y in zip(tokens, reference))
    return same / total


class CallCounter:
    """Counts encoder passes (one per model call, for the oracle and the sampler alike)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls = 0
        embeddings = _base(model).model.embeddings
        self.handle = embeddings.register_forward_hook(lambda *_: self._count())

    def _count(self) -> None:
        self.calls += 1

    def reset(self) -> None:
        self.calls = 0


def _base(model: torch.nn.Module) -> torch.nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def answer_questions(
    lm: Diffutron, questions: list[dict[str, str]], config: GenerationConfig, *, oracle: bool = False
) -> Run:
    """Answer each question alone (batch of one), timing each answer."""
    counter = CallCounter(lm.model)
    run = Run([], [], [], [], [])
    try:
        for question in questions:
            prompt = lm.encode(render_chat(question["question"]))
            counter.reset()
            start = time.perf_counter()
            if oracle:
                canvas = reference_sample(
                    lm.model,
                    lm.tokenizer,
                    [prompt],
                    max_new_tokens=config.max_new_tokens,
                    steps=config.steps,
                    block_length=config.block_length,
                    repetition_penalty=config.repetition_penalty,
                )
                blocks = math.ceil(config.max_new_tokens / config.block_length)
            else:
                seen: set[int] = set()
                canvas = sample(
                    lm.model,
                    lm.tokenizer,
                    [prompt],
                    config,
                    callback=lambda event, seen=seen: seen.add(event.blocks[0]),
                )
                blocks = len(seen)
            run.seconds.append(time.perf_counter() - start)
            row = canvas[0].tolist()
            run.answers.append(lm.answer(row, len(prompt)))
            run.tokens.append(_answer_tokens(row, len(prompt), lm))
            run.calls.append(counter.calls)
            run.blocks.append(blocks)
    finally:
        counter.handle.remove()
    return run


def _answer_tokens(row: list[int], prompt_length: int, lm: Diffutron) -> list[int]:
    ends = {lm.special.mask, *lm.special.stops}
    tokens = row[prompt_length:]
    return next((tokens[:i] for i, token in enumerate(tokens) if token in ends), tokens)


def precision_variants(model: torch.nn.Module, dtypes: set[str]) -> dict[str, torch.nn.Module]:
    """The float32 model and copies of it in the other precisions asked for."""
    variants = {"float32": model, "auto": model}
    for dtype in dtypes - set(variants):
        if dtype == "bfloat16":
            variants[dtype] = copy.deepcopy(model).to(torch.bfloat16)
        elif dtype == "int8":
            variants[dtype] = quantize_int8(copy.deepcopy(model))
    return variants


def preset_dtypes() -> dict[str, str]:
    return {speed: speed_dtype(speed, "cpu") for speed in SPEEDS}


# --- part 1 --------------------------------------------------------------------------------


def quality_part(lm: Diffutron, questions: list[dict[str, str]], new_tokens: list[int], sweep: bool) -> dict[str, Any]:
    dtypes = preset_dtypes()
    variants = precision_variants(lm.model, set(dtypes.values()) | ({"bfloat16", "int8"} if sweep else set()))
    results: dict[str, Any] = {}
    for tokens in new_tokens:
        base = GREEDY.replace(max_new_tokens=tokens, steps=tokens)
        oracle = answer_questions(lm, questions, base, oracle=True)
        exact = answer_questions(lm, questions, speed_config("exact", base))
        runs = {ORACLE: oracle, "exact": exact}
        for speed in SPEEDS[1:]:
            runs[speed] = answer_questions(
                _with_model(lm, variants[dtypes[speed]]), questions, speed_config(speed, base)
            )
        table = {name: run.summary(questions, exact) for name, run in runs.items()}
        table["exact"]["identical_to_oracle"] = exact.tokens == oracle.tokens
        for name in table:
            table[name]["wall_clock_speedup"] = round(
                statistics.mean(oracle.seconds) / table[name]["seconds_per_answer"], 2
            )
        results[str(tokens)] = {"presets": table}
        _print_quality(tokens, table, dtypes)
        if sweep:
            results[str(tokens)]["sweep"] = sweep_part(lm, variants, questions, base, exact, oracle)
    return results


def sweep_part(
    lm: Diffutron,
    variants: dict[str, torch.nn.Module],
    questions: list[dict[str, str]],
    base: GenerationConfig,
    exact: Run,
    oracle: Run,
) -> dict[str, Any]:
    """Candidate settings, one technique at a time, then combined."""
    candidates: list[tuple[str, str, dict[str, Any]]] = []
    for threshold in (0.7, 0.8, 0.9, 0.95):
        candidates.append((f"threshold={threshold}", "float32", {"threshold": threshold}))
    for factor in (0.5, 1.0, 2.0):
        candidates.append((f"factor={factor}", "float32", {"factor": factor}))
    for cache in ("prefix", "dual"):
        candidates.append((f"cache={cache}", "float32", {"cache": cache}))
    for dtype in ("bfloat16", "int8"):
        candidates.append((dtype, dtype, {}))
    for threshold in (0.7, 0.8, 0.9):
        for dtype in ("bfloat16", "int8"):
            candidates.append((f"threshold={threshold}+dual+{dtype}", dtype, {"threshold": threshold, "cache": "dual"}))
    for factor in (1.0, 2.0):
        candidates.append((f"factor={factor}+dual+int8", "int8", {"factor": factor, "cache": "dual"}))
    table = {}
    for name, dtype, change in candidates:
        run = answer_questions(_with_model(lm, variants[dtype]), questions, base.replace(**change))
        table[name] = run.summary(questions, exact)
        table[name]["wall_clock_speedup"] = round(
            statistics.mean(oracle.seconds) / table[name]["seconds_per_answer"], 2
        )
    print(f"\nsweep, {base.max_new_tokens} new tokens (exact: chrF {exact.summary(questions, None)['chrf']})")
    _print_rows(table)
    return table


def _with_model(lm: Diffutron, model: torch.nn.Module) -> Diffutron:
    return Diffutron(model, lm.tokenizer, lm.config)


def _print_quality(tokens: int, table: dict[str, dict[str, Any]], dtypes: dict[str, str]) -> None:
    print(
        f"\npart 1: trained model, {tokens} new tokens, greedy, one question at a time "
        f"(preset dtypes on this CPU: {dtypes})"
    )
    _print_rows(table)


def _print_rows(table: dict[str, dict[str, Any]]) -> None:
    print(f"{'':>28} {'chrF':>6} {'agree':>6} {'calls':>6} {'c/blk':>6} {'s/ans':>7} {'speed-up':>8}")
    for name, row in table.items():
        print(
            f"{name:>28} {row['chrf']:>6.2f} {row.get('token_agreement', 1.0):>6.3f} "
            f"{row['calls_per_answer']:>6.2f} {row['calls_per_block']:>6.2f} "
            f"{row['seconds_per_answer']:>7.3f} {row['wall_clock_speedup']:>7.2f}x"
        )


# --- part 2 --------------------------------------------------------------------------------


def per_call_part(
    threads: list[int],
    repeats: int,
    calls_per_block: dict[str, dict[int, float]],
    calls_per_answer: dict[str, dict[int, float]],
    techniques: bool,
) -> dict[str, Any]:
    """Seconds per call of the oracle and each preset, the minimum of `repeats` interleaved runs."""
    dtypes = preset_dtypes()
    tokenizer = tokenizer_with_mmbert_ids()
    wanted = set(dtypes.values()) | ({"bfloat16", "int8"} if techniques else set())
    variants = precision_variants(mmbert_shaped_model(), wanted)
    generator = torch.Generator().manual_seed(1)
    result: dict[str, Any] = {}
    if techniques:
        result["techniques"] = technique_part(variants, tokenizer, min(threads), repeats)
    rows = []
    for prompt_tokens, new_tokens in SHAPES:
        prompt = torch.randint(5, MMBERT_BASE["vocab_size"], (prompt_tokens,), generator=generator).tolist()
        configs = {speed: _timing_config(speed, new_tokens, calls_per_block) for speed in SPEEDS}
        for count in threads:
            torch.set_num_threads(count)
            timings: dict[str, list[float]] = {name: [] for name in (ORACLE, *SPEEDS)}
            for _ in range(repeats):
                timings[ORACLE].append(_oracle_seconds_per_call(variants["float32"], tokenizer, prompt, new_tokens))
                for speed in SPEEDS:
                    events: list[Any] = []
                    start = time.perf_counter()
                    sample(variants[dtypes[speed]], tokenizer, [prompt], configs[speed], callback=events.append)
                    timings[speed].append((time.perf_counter() - start) / len(events))
            row: dict[str, Any] = {"prompt": prompt_tokens, "new": new_tokens, "threads": count}
            row.update({f"{name}_s_per_call": min(values) for name, values in timings.items()})
            oracle_answer = row["oracle_s_per_call"] * new_tokens  # the oracle: one call per token
            for speed in SPEEDS:
                row[f"{speed}_per_call_speedup"] = row["oracle_s_per_call"] / row[f"{speed}_s_per_call"]
                calls = calls_per_answer.get(speed, {}).get(new_tokens)
                if calls is not None:
                    row[f"{speed}_projected_speedup"] = oracle_answer / (row[f"{speed}_s_per_call"] * calls)
            rows.append(row)
            _print_call_row(row)
    result["presets"] = rows
    return result


def technique_part(
    variants: dict[str, torch.nn.Module], tokenizer: Any, threads: int, repeats: int
) -> dict[str, dict[str, float]]:
    """Milliseconds per call of each precision with each cache: 30-token prompt, 64 new tokens,
    4 calls per block (one refresh, three cached calls)."""
    torch.set_num_threads(threads)
    prompt = torch.randint(5, MMBERT_BASE["vocab_size"], (30,), generator=torch.Generator().manual_seed(2)).tolist()
    table: dict[str, dict[str, float]] = {}
    print(f"\nms per call by technique ({threads} thread(s)), cache: none / prefix / dual")
    for dtype in ("float32", "bfloat16", "int8"):
        table[dtype] = {}
        for cache in ("none", "prefix", "dual"):
            config = GREEDY.replace(max_new_tokens=64, steps=8, cache=cache, early_stop=False)
            best = math.inf
            for _ in range(repeats):
                start = time.perf_counter()
                sample(variants[dtype], tokenizer, [prompt], config)
                best = min(best, (time.perf_counter() - start) / 8)
            table[dtype][cache] = round(best * 1000, 1)
        print(f"{dtype:>9}: " + " / ".join(f"{ms:.0f}" for ms in table[dtype].values()), flush=True)
    return table


def _oracle_seconds_per_call(model: torch.nn.Module, tokenizer: Any, prompt: list[int], new_tokens: int) -> float:
    """One call per block: every oracle call runs the full canvas, whatever the schedule."""
    blocks = math.ceil(new_tokens / GREEDY.block_length)
    start = time.perf_counter()
    reference_sample(
        model,
        tokenizer,
        [prompt],
        max_new_tokens=new_tokens,
        steps=blocks,
        block_length=GREEDY.block_length,
        repetition_penalty=GREEDY.repetition_penalty,
    )
    return (time.perf_counter() - start) / blocks


def _timing_config(speed: str, new_tokens: int, calls_per_block: dict[str, dict[int, float]]) -> GenerationConfig:
    """The preset's cache, on the count schedule with the trained model's calls per block.

    `exact` makes plain passes, whose cost does not depend on the schedule: 2 calls per block.
    Without a part 1 measurement the fast presets commit one token per call.
    """
    per_block = 2.0 if speed == "exact" else calls_per_block.get(speed, {}).get(new_tokens, GREEDY.block_length)
    steps = max(1, round(per_block)) * math.ceil(new_tokens / GREEDY.block_length)
    return speed_config(
        speed, GREEDY, max_new_tokens=new_tokens, steps=steps, threshold=None, factor=None, early_stop=False
    )


def _print_call_row(row: dict[str, Any]) -> None:
    cells = [f"oracle {row['oracle_s_per_call']:.3f}s"]
    for speed in SPEEDS:
        cell = f"{speed} {row[f'{speed}_s_per_call']:.3f}s ({row[f'{speed}_per_call_speedup']:.1f}x/call"
        if f"{speed}_projected_speedup" in row:
            cell += f", {row[f'{speed}_projected_speedup']:.1f}x/answer"
        cells.append(cell + ")")
    print(f"prompt {row['prompt']:>3} new {row['new']:>3} threads {row['threads']}: " + "  ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="trained checkpoint for part 1 [the embedded model]")
    parser.add_argument("--questions", type=Path, default=None, help="definition questions (JSONL)")
    parser.add_argument("--limit", type=int, default=20, help="questions per split")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="part 2")
    parser.add_argument("--quality-threads", type=int, default=1, help="part 1 (a small model)")
    parser.add_argument("--repeats", type=int, default=2, help="part 2: the minimum of this many runs")
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--sweep", action="store_true", help="also measure candidate settings")
    parser.add_argument("--skip-per-call", action="store_true", help="part 1 only")
    parser.add_argument(
        "--techniques", action="store_true", help="part 2: also time each precision with each cache (one thread count)"
    )
    parser.add_argument("--output", type=Path, default=None, help="write every figure as JSON")
    args = parser.parse_args()

    report: dict[str, Any] = {
        "cpu_threads_available": os.cpu_count(),
        "bfloat16_native": cpu_bfloat16_supported(),
        "load_average_at_start": os.getloadavg(),
        "presets": {
            speed: {"sampler": speed_config(speed).to_dict(), "cpu_dtype": dtype}
            for speed, dtype in preset_dtypes().items()
        },
    }
    calls_per_block: dict[str, dict[int, float]] = {}
    calls_per_answer: dict[str, dict[int, float]] = {}
    if args.questions is not None:
        torch.set_num_threads(args.quality_threads)
        lm = Diffutron.from_pretrained(args.model, device="cpu", dtype="float32")
        rows = read_questions(args.questions)
        questions = [
            row
            for split in dict.fromkeys(r["split"] for r in rows)
            for row in [r for r in rows if r["split"] == split][: args.limit]
        ]
        report["model"] = lm.info()
        report["quality_threads"] = args.quality_threads
        report["questions"] = len(questions)
        report["quality"] = quality_part(lm, questions, args.new_tokens, args.sweep)
        for tokens, result in report["quality"].items():
            for name, row in result["presets"].items():
                calls_per_block.setdefault(name, {})[int(tokens)] = row["calls_per_block"]
                calls_per_answer.setdefault(name, {})[int(tokens)] = row["calls_per_answer"]
    else:
        print("no --questions: calls per answer and quality are not measured (part 2 commits one token per call)")
    if not args.skip_per_call:
        print("\npart 2: seconds per call, random model of mmBERT-base's shape (307.8M parameters)")
        report["per_call"] = per_call_part(
            args.threads, args.repeats, calls_per_block, calls_per_answer, args.techniques
        )
    report["load_average_at_end"] = os.getloadavg()
    if args.output is not None:
        with atomic_file(args.output) as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
