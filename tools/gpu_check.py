"""Check a GPU machine end to end in one run: versions, loading, every sampler mode, agreement with the
reference sampler, sampler speed and host syncs, training memory (old loss path against the new one),
a trainer run with a checkpoint and a resume, likelihood throughput.

Every section runs under its own time budget and error handler, and prints one line per result
(`section.result: value`), so a failure or a slow section costs its own lines only. On one H100 or
H200 the whole script finishes within 8 minutes; `--device cpu --small` (small shapes) runs it on
any machine in under a minute and is what the test suite runs, so that it does not rot.

    python tools/gpu_check.py [--device cuda] [--small] [--sections versions,loading,...]

docs/gpu.md says what each line means.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
import json
import logging
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from diffutron.errors import DiffutronError

# the benchmarks' random models, training steps and memory meters
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from measure import memory_in_use, peak_memory, reset_peak_memory  # noqa: E402
from workloads import (  # noqa: E402
    MMBERT_BASE,
    TURKISH_WORDS,
    mdlm_training_steps,
    random_masked_lm,
    tokenizer_with_mmbert_ids,
)

SMALL_SHAPE = dict(
    MMBERT_BASE,
    vocab_size=2000,
    hidden_size=64,
    num_hidden_layers=3,
    intermediate_size=96,
    num_attention_heads=2,
    local_attention=16,
    max_position_embeddings=512,
)
MASK_ID = 4


@dataclass(frozen=True)
class Scale:
    """The sizes of one run: the paper's on a GPU, small ones for `--small`."""

    shape: dict
    agreement_rows: tuple[int, ...]
    agreement_tokens: int
    speed_rows: tuple[int, ...]
    speed_tokens: int
    train_batch: tuple[int, int]
    likelihood_batches: tuple[int, ...]
    likelihood_pairs: int


FULL = Scale(MMBERT_BASE, (1, 8), 16, (1, 32), 64, (64, 512), (32, 256), 512)
SMALL = Scale(SMALL_SHAPE, (1, 2), 8, (1, 4), 8, (4, 64), (4, 16), 16)

# seconds per section on one H100 / H200; --small scales them down
BUDGETS = {
    "versions": 20,
    "loading": 40,
    "modes": 45,
    "agreement": 75,
    "speed": 75,
    "training": 120,
    "trainer": 60,
    "likelihood": 40,
}


class SectionTimeout(Exception):
    """The section's time budget ran out."""


class Report:
    def __init__(self, section: str) -> None:
        self.section = section

    def __call__(self, name: str, value: object) -> None:
        print(f"{self.section}.{name}: {value}", flush=True)


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Raise SectionTimeout in the main thread once `seconds` have passed (checked between Python
    bytecodes, so a running kernel finishes first)."""

    def expire(signum: int, frame: object) -> None:
        raise SectionTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Context:
    """What the sections share: the device, the sizes, and models built once."""

    def __init__(self, device: torch.device, scale: Scale) -> None:
        self.device = device
        self.scale = scale
        self._shaped: torch.nn.Module | None = None
        self._embedded = None

    @property
    def gpu(self) -> bool:
        return self.device.type == "cuda"

    def shaped_model(self) -> torch.nn.Module:
        """Random weights of the checked shape (mmBERT-base's 307M on a GPU), float32, on the device."""
        if self._shaped is None:
            self._shaped = random_masked_lm(self.scale.shape, self.device)
        return self._shaped

    def embedded(self):
        from diffutron.lm import Diffutron

        if self._embedded is None:
            self._embedded = Diffutron.from_pretrained(None, device=str(self.device))
        return self._embedded

    def synchronize(self) -> None:
        if self.gpu:
            torch.cuda.synchronize(self.device)


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def check_versions(context: Context, report: Report) -> None:
    from diffutron.training.run import bitsandbytes_problem

    report("python", platform.python_version())
    report("torch", f"{torch.__version__} (CUDA {torch.version.cuda})")
    for name in ("transformers", "peft", "accelerate", "lm_eval", "bitsandbytes", "flash_attn", "deepspeed"):
        report(name, package_version(name))
    report("device", context.device)
    if context.gpu:
        properties = torch.cuda.get_device_properties(context.device)
        memory = properties.total_memory / 2**30
        report("gpu", f"{properties.name}, {memory:.1f} GiB, {torch.cuda.device_count()} visible")
        report("bf16_supported", torch.cuda.is_bf16_supported())
        problem = bitsandbytes_problem()
        report("paged_adamw_8bit", "works" if problem is None else f"unavailable ({problem})")
    else:
        report("cpu_threads", torch.get_num_threads())


def check_loading(context: Context, report: Report) -> None:
    from diffutron.lm import Diffutron
    from diffutron.model.loading import load_checkpoint

    start = time.perf_counter()
    lm = Diffutron.from_pretrained(None, device=str(context.device))  # dtype auto: bf16 on CUDA
    parameter = next(lm.model.parameters())
    report("embedded", f"{parameter.dtype} on {parameter.device} in {time.perf_counter() - start:.2f} s")
    try:
        model, _ = load_checkpoint(None, device=str(context.device), dtype="int8")
        report("int8_on_device", f"loads on {next(model.parameters()).device}")
    except DiffutronError as error:
        report("int8_on_device", f"refused before loading: {error}")
    model, _ = load_checkpoint(None, device="auto", dtype="int8")
    report("int8_auto", f"loads on {next(model.parameters()).device}")


def count_calls(model: torch.nn.Module) -> tuple[list[int], Callable[[], None]]:
    """A counter of the encoder's forward passes (one per sampler model call) and its remover."""
    encoder = model.get_base_model().model if hasattr(model, "get_base_model") else model.model
    calls = [0]
    handle = encoder.register_forward_pre_hook(lambda module, args: calls.__setitem__(0, calls[0] + 1))
    return calls, handle.remove


SAMPLER_MODES = {
    "model_card": {"seed": 0},
    "greedy": {"temperature": 0.0},
    "stochastic_transfer": {"stochastic_transfer": True, "seed": 0},
    "random_remasking": {"remasking": "random", "seed": 0},
    "cfg": {"cfg_scale": 1.0, "temperature": 0.0},
    "penalty_generated": {"penalty_scope": "generated", "temperature": 0.0},
    "threshold": {"threshold": 0.9, "temperature": 0.0},
    "factor": {"factor": 1.0, "temperature": 0.0},
    "prefix_cache": {"threshold": 0.9, "cache": "prefix", "temperature": 0.0},
    "dual_cache": {"threshold": 0.9, "cache": "dual", "refresh_every": 4, "temperature": 0.0},
}


def check_modes(context: Context, report: Report) -> None:
    from diffutron.model.chat import render_chat
    from diffutron.sampling.config import GenerationConfig
    from diffutron.sampling.sampler import sample

    lm = context.embedded()
    prompts = [
        lm.tokenizer(render_chat(q), add_special_tokens=False)["input_ids"]
        for q in ("Türkiye'nin başkenti neresidir?", "Bugün hava nasıl?")
    ]
    tokens = 32 if context.gpu else 16
    for name, options in SAMPLER_MODES.items():
        config = GenerationConfig(max_new_tokens=tokens, steps=tokens, block_length=16, **options)
        calls, remove = count_calls(lm.model)
        try:
            start = time.perf_counter()
            canvas = sample(lm.model, lm.tokenizer, prompts, config)
            context.synchronize()
            seconds = time.perf_counter() - start
            left = sum(int((row[len(p) :] == lm.special.mask).sum()) for row, p in zip(canvas, prompts))
            report(name, f"OK calls={calls[0]} masks_left={left} {seconds:.2f} s")
        except SectionTimeout:
            raise
        except Exception as error:  # noqa: BLE001 (one mode's failure is its own line)
            report(name, f"ERROR {type(error).__name__}: {error}")
        finally:
            remove()
    start = time.perf_counter()
    filled = lm.infill("Türkiye'nin başkenti [MASK:3] şehridir.", GenerationConfig(temperature=0.0))
    report("infill", f"OK {time.perf_counter() - start:.2f} s: {filled!r}")


class OnDevice(torch.nn.Module):
    """Lets the CPU-only reference sampler drive a model on another device (logits come back as float32)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        device = next(self.inner.parameters()).device
        mask = attention_mask.to(device) if attention_mask is not None else None
        logits = self.inner(input_ids=input_ids.to(device), attention_mask=mask).logits
        return type("Output", (), {"logits": logits.float().cpu()})()


def random_prompts(rows: int, vocabulary: int, seed: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(12, 40, (rows,), generator=generator).tolist()
    return [torch.randint(5, vocabulary, (n,), generator=generator).tolist() for n in lengths]


def check_agreement(context: Context, report: Report) -> None:
    from diffutron.sampling.config import GenerationConfig
    from diffutron.sampling.reference import reference_sample
    from diffutron.sampling.sampler import sample

    tokenizer = tokenizer_with_mmbert_ids()
    tokens = context.scale.agreement_tokens
    config = GenerationConfig(
        max_new_tokens=tokens, steps=tokens, block_length=tokens, temperature=0.0, early_stop=False
    )
    base = context.shaped_model()
    for dtype in (torch.float32, torch.bfloat16):
        model = base if dtype == torch.float32 else copy.deepcopy(base).to(dtype)
        for rows in context.scale.agreement_rows:
            prompts = random_prompts(rows, context.scale.shape["vocab_size"], seed=rows)
            expected = reference_sample(
                OnDevice(model),
                tokenizer,
                prompts,
                max_new_tokens=tokens,
                steps=tokens,
                block_length=tokens,
                repetition_penalty=config.repetition_penalty,
            )
            actual = sample(model, tokenizer, prompts, config).cpu()
            same = [bool(torch.equal(a, e)) for a, e in zip(actual, expected)]
            generated = [
                (a[len(p) : len(p) + tokens] == e[len(p) : len(p) + tokens]).float().mean().item()
                for a, e, p in zip(actual, expected, prompts)
            ]
            name = f"{str(dtype).removeprefix('torch.')}_rows{rows}"
            report(
                name, f"identical rows {sum(same)}/{rows}, generated tokens agreeing {100 * sum(generated) / rows:.1f}%"
            )
        if model is not base:
            del model


@contextmanager
def counted_syncs(enabled: bool) -> Iterator[list[int]]:
    """Host synchronisations seen by CUDA's sync debug mode (one warning each); nothing off CUDA."""
    count = [0]
    if not enabled:
        yield count
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield count
        finally:
            torch.cuda.set_sync_debug_mode("default")
            count[0] = sum("synchroniz" in str(w.message) for w in caught)


def check_speed(context: Context, report: Report) -> None:
    from diffutron.sampling.config import GenerationConfig
    from diffutron.sampling.presets import speed_config
    from diffutron.sampling.sampler import sample

    tokenizer = tokenizer_with_mmbert_ids()
    model = context.shaped_model()
    tokens = context.scale.speed_tokens
    base = GenerationConfig(max_new_tokens=tokens, steps=tokens, block_length=min(32, tokens), early_stop=False, seed=0)
    for preset in ("exact", "fast"):
        config = speed_config(preset, base)
        for rows in context.scale.speed_rows:
            prompts = random_prompts(rows, context.scale.shape["vocab_size"], seed=100 + rows)
            sample(model, tokenizer, prompts, config.replace(max_new_tokens=min(4, tokens), steps=min(4, tokens)))
            calls, remove = count_calls(model)
            try:
                context.synchronize()
                with counted_syncs(context.gpu) as syncs:
                    start = time.perf_counter()
                    sample(model, tokenizer, prompts, config)
                    context.synchronize()
                    seconds = time.perf_counter() - start
            finally:
                remove()
            per_call = seconds / max(1, calls[0])
            sync_text = f"{syncs[0] / max(1, calls[0]):.1f} host syncs per call" if context.gpu else "syncs n/a (CPU)"
            report(
                f"{preset}_rows{rows}",
                f"{1000 * per_call:.1f} ms per call, {calls[0]} calls, "
                f"{rows * tokens / seconds:.1f} tokens/s, {sync_text}",
            )


def check_training(context: Context, report: Report) -> None:
    from diffutron.training.config import LoraSettings
    from diffutron.training.models import apply_lora

    batch, length = context.scale.train_batch
    lora = LoraSettings(r=256 if context.scale is FULL else 8)
    model = apply_lora(copy.deepcopy(context.shaped_model()), lora).train()
    ids = torch.randint(
        5,
        context.scale.shape["vocab_size"],
        (batch, length),
        device=context.device,
        generator=torch.Generator(context.device).manual_seed(0),
    )
    autocast = torch.bfloat16 if context.gpu else None
    steps = mdlm_training_steps(model, ids, MASK_ID, autocast_dtype=autocast)
    results = {}
    for path in ("after", "before"):  # the new path first: the old one may not fit
        try:
            steps[path]()  # warm-up
            context.synchronize()
            resident = memory_in_use(context.device)
            reset_peak_memory(context.device)
            start = time.perf_counter()
            losses = [steps[path]() for _ in range(2)]
            context.synchronize()
            seconds = (time.perf_counter() - start) / 2
            peak = peak_memory(context.device) - resident
            results[path] = (peak, seconds)
            report(
                f"{path}_micro_step",
                f"{peak / 2**20:.1f} MiB above the model, {seconds:.3f} s, loss "
                f"{losses[0]:.4f} (batch {batch} x {length}, "
                f"{'bf16 autocast' if autocast else 'float32'})",
            )
        except torch.OutOfMemoryError:
            report(f"{path}_micro_step", "out of memory")
            if context.gpu:
                torch.cuda.empty_cache()
    if len(results) == 2:
        (new_peak, new_seconds), (old_peak, old_seconds) = results["after"], results["before"]
        memory = f"{new_peak / old_peak:.2f}x" if old_peak > 0 else "n/a (too small to measure)"
        report("after_over_before", f"memory {memory}, time {new_seconds / old_seconds:.2f}x")


def check_trainer(context: Context, report: Report) -> None:
    import datasets

    from diffutron.data.prepared import write_prepared
    from diffutron.model.loading import default_model_path
    from diffutron.training.callbacks import read_log
    from diffutron.training.config import load_training_recipe
    from diffutron.training.run import train

    datasets.disable_progress_bars()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    tokenizer = context.embedded().tokenizer
    text = " ".join(TURKISH_WORDS)
    row = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        work = Path(scratch)
        write_prepared(
            datasets.Dataset.from_dict({"input_ids": [row] * 48}), work / "data", {"kind": "pretrain"}, overwrite=False
        )
        recipe_path = work / "recipe.yaml"
        recipe_path.write_text(
            json.dumps(
                {
                    "task": "pretrain",
                    "output_dir": str(work / "run"),
                    "model": {"name_or_path": str(default_model_path())},
                    "data": {"train": str(work / "data")},
                    "optimizer": {"name": "adamw_torch", "lr": 1e-4, "warmup": 0},
                    "training": {
                        "batch_size": 8,
                        "max_steps": 6,
                        "max_length": 64,
                        "precision": "auto",
                        "pad_to_multiple_of": 64 if context.gpu else 1,
                    },
                    "checkpoints": {"save_steps": 3, "keep_last": 2},
                    "logging": {"steps": 1, "tensorboard": False},
                }
            )
        )
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its log records
            final = train(load_training_recipe(recipe_path))
        report(
            "run",
            f"6 steps in {time.perf_counter() - start:.1f} s, last loss "
            f"{read_log(work / 'run' / 'log.jsonl')[-1].get('loss', float('nan')):.4f}",
        )
        first = {name: tensor.clone() for name, tensor in _weights(final).items()}
        for leftover in (work / "run" / "checkpoint-6", final):
            _remove(leftover)
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            resumed = train(load_training_recipe(recipe_path), resume=True)
        difference = max((first[name] - tensor).abs().max().item() for name, tensor in _weights(resumed).items())
        report(
            "resume",
            f"from checkpoint-3 in {time.perf_counter() - start:.1f} s, largest weight difference to "
            f"the uninterrupted run {difference:.3g}",
        )


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(directory / "model.safetensors")


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path)


def check_likelihood(context: Context, report: Report) -> None:
    from diffutron.eval.batch_size import auto_batch_size
    from diffutron.eval.likelihood import ContinuationScorer

    model = context.shaped_model()
    tokenizer = tokenizer_with_mmbert_ids()
    generator = torch.Generator().manual_seed(0)
    vocabulary = context.scale.shape["vocab_size"]
    pairs_wanted = context.scale.likelihood_pairs
    for batch_size in context.scale.likelihood_batches:
        scorer = ContinuationScorer(model, tokenizer, mc_num=8, batch_size=batch_size, max_length=512)
        pairs = [
            scorer.fit(
                torch.randint(5, vocabulary, (100,), generator=generator).tolist(),
                torch.randint(5, vocabulary, (4,), generator=generator).tolist(),
            )
            for _ in range(pairs_wanted)
        ]
        scorer.score(pairs[: max(1, pairs_wanted // 8)])  # warm-up
        context.synchronize()
        start = time.perf_counter()
        scorer.score(pairs)
        context.synchronize()
        report(
            f"batch{batch_size}",
            f"{pairs_wanted / (time.perf_counter() - start):.1f} pairs/s (context 100, continuation 4, mc_num 8)",
        )
    report("auto_batch_size", f"{auto_batch_size(model, 512, context.device)} rows of 512 tokens")


SECTIONS: dict[str, Callable[[Context, Report], None]] = {
    "versions": check_versions,
    "loading": check_loading,
    "modes": check_modes,
    "agreement": check_agreement,
    "speed": check_speed,
    "training": check_training,
    "trainer": check_trainer,
    "likelihood": check_likelihood,
}


def run_sections(context: Context, names: list[str], budget_scale: float) -> int:
    """Run the sections; returns how many failed or ran out of time."""
    failures = 0
    for name in names:
        report = Report(name)
        budget = BUDGETS[name] * budget_scale
        start = time.perf_counter()
        try:
            with time_budget(budget):
                SECTIONS[name](context, report)
            report("done", f"{time.perf_counter() - start:.1f} s (budget {budget:.0f} s)")
        except SectionTimeout:
            failures += 1
            report("timeout", f"stopped after its budget of {budget:.0f} s; the lines above are complete")
        except Exception as error:  # noqa: BLE001 (one section's failure is its own lines)
            failures += 1
            where = traceback.extract_tb(error.__traceback__)[-1]
            report(
                "error",
                f"{type(error).__name__}: {str(error).strip()[:300]} ({Path(where.filename).name}:{where.lineno})",
            )
    return failures


def quiet_libraries() -> None:
    """Progress bars and warnings of the libraries would break the one-line-per-result output."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(arguments: list[str] | None = None) -> int:
    """Run the check with command-line `arguments` (sys.argv's by default); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="small shapes and batches (a quick run on any device)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated, from: " + ", ".join(SECTIONS))
    parser.add_argument(
        "--budget-scale",
        type=float,
        default=None,
        help="multiply every section's time budget (default 1, or 0.5 with --small)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU runs)")
    args = parser.parse_args(arguments)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here; use --device cpu --small")
    quiet_libraries()
    scale = SMALL if args.small else FULL
    budget_scale = args.budget_scale if args.budget_scale is not None else (0.5 if args.small else 1.0)
    started = time.perf_counter()
    failures = run_sections(Context(device, scale), names, budget_scale)
    print(f"total: {time.perf_counter() - started:.1f} s, {failures} section(s) failed or timed out", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
