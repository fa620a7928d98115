"""The `diffutron` model of lm-evaluation-harness: likelihoods by the MDLM bound, text by the sampler.

Importing this module registers it:

    import diffutron.eval.harness_model  # noqa: F401  (registers "diffutron")
    lm_eval.simple_evaluate(model="diffutron", model_args="pretrained=DIR,mc_num=128", ...)

Model arguments: pretrained (directory or hub id; default the embedded model), device,
dtype, batch_size (masked rows per forward pass; auto, the default, sizes it for the device), mc_num,
max_length (window; default the model's), seed, check_greedy, and any GenerationConfig field for
generate_until.

Several processes (`accelerate launch -m lm_eval --model diffutron ...` or `torchrun`): each takes
its own device (cuda:LOCAL_RANK, or the CPU over gloo), lm-eval gives each its share of the
requests, and the results are gathered on rank 0, as with lm-eval's Hugging Face model.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm.auto import tqdm

from diffutron.distributed import (
    all_gather_tensor,
    barrier,
    current_launch,
    ensure_process_group,
    gather_objects,
    launch_device,
)
from diffutron.errors import DiffutronError
from diffutron.eval.batch_size import auto_batch_size
from diffutron.eval.likelihood import ContinuationScorer, Pair
from diffutron.lm import Diffutron
from diffutron.model.chat import ANSWER_END, Message, render_chat
from diffutron.model.tokens import cut_to_fit, encode_text
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.sampler import sample

log = logging.getLogger(__name__)

GENERATION_FIELDS = tuple(field.name for field in dataclasses.fields(GenerationConfig))
# generation kwargs of lm-eval tasks that map onto nothing in a masked-diffusion sampler
_IGNORED_GEN_KWARGS = ("top_p", "top_k", "num_beams", "min_gen_toks")


@register_model("diffutron")
class DiffutronHarnessLM(LM):
    """lm-eval `LM` over a `Diffutron` (loaded from `pretrained`, or given as `lm`)."""

    def __init__(
        self,
        pretrained: str | None = None,
        *,
        lm: Diffutron | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | str | None = None,
        mc_num: int = 128,
        max_length: int | None = None,
        seed: int = 0,
        check_greedy: bool = False,
        **generation: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(generation) - set(GENERATION_FIELDS))
        if unknown:
            raise DiffutronError(
                f"unknown diffutron model argument(s) {', '.join(unknown)}; valid: pretrained, device, "
                f"dtype, batch_size, mc_num, max_length, seed, check_greedy, {', '.join(GENERATION_FIELDS)}"
            )
        if lm is None and device and str(device).startswith("cuda") and not torch.cuda.is_available():
            raise DiffutronError(f"device {device!r} was asked for but CUDA is not available: use --device cpu")
        # under torchrun / accelerate launch lm-eval splits the requests by rank and gathers the results
        self.launch = current_launch()
        ensure_process_group(self.launch)
        self._rank, self._world_size = self.launch.rank, self.launch.world_size
        if lm is None:
            device = launch_device(self.launch, device)
        self.lm = lm if lm is not None else Diffutron.from_pretrained(pretrained, device=device, dtype=dtype)
        self._device = self.lm.device
        window = max_length or self.lm.context_length
        requested = _batch_size(batch_size)
        self.batch_size = requested or auto_batch_size(self.lm.model, window, self.lm.device)
        self.scorer = ContinuationScorer(
            self.lm.model,
            self.lm.tokenizer,
            mc_num=mc_num,
            batch_size=self.batch_size,
            max_length=window,
            seed=seed,
            check_greedy=check_greedy,
        )
        self._steps_given = "steps" in generation
        self.generation = GenerationConfig(**{"truncate": "left", "seed": seed, **generation})
        self.truncated: Counter[str] = Counter()  # contexts cut from the left, per task

    @property
    def max_length(self) -> int:
        return self.scorer.max_length

    @property
    def device(self) -> torch.device:
        return self._device

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return all_gather_tensor(tensor, self.launch)

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        return gather_objects(obj, self.launch, dst)

    def barrier(self) -> None:
        barrier(self.launch)

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.lm.tokenizer, "name_or_path", "diffutron")).replace("/", "__")

    def settings(self) -> dict[str, Any]:
        """What a result depends on, for result files."""
        return {
            "model": str(getattr(self.lm.model.config, "_name_or_path", "")),
            "mc_num": self.scorer.mc_num,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "seed": self.scorer.seed,
            "check_greedy": self.scorer.check_greedy,
            "device": str(self.lm.device),
            "dtype": str(next(self.lm.model.parameters()).dtype).removeprefix("torch."),
        }

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        encoded: dict[str, list[int]] = {}  # multiple-choice requests repeat their context

        def encode(text: str) -> list[int]:
            if text not in encoded:
                encoded[text] = encode_text(self.lm.tokenizer, text)
            return encoded[text]

        pairs = [self.scorer.fit(encode(request.args[0]), encode(request.args[1])) for request in requests]
        scores = self.scorer.score(pairs, progress=not disable_tqdm)
        results = []
        for request, score in zip(requests, scores):
            if score.truncated:
                self.truncated[request.task_name or "unknown"] += 1
            result = (score.logprob, score.is_greedy)
            self.cache_hook.add_partial("loglikelihood", request.args, result)
            results.append(result)
        self._warn_truncated(sum(score.truncated for score in scores), "contexts")
        return results

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        """The bound over whole texts: chunks of half the window, each after up to a window
        of preceding tokens. A lower bound on log p, so perplexities from it are upper bounds."""
        chunk = max(1, self.max_length // 2)
        pairs: list[Pair] = []
        owners: list[int] = []
        for index, request in enumerate(requests):
            ids = self.lm.encode(request.args[0]) if request.args[0] else []
            for start in range(0, len(ids), chunk):
                pairs.append(self.scorer.fit(ids[:start], ids[start : start + chunk]))
                owners.append(index)
        totals = [0.0] * len(requests)
        for owner, score in zip(owners, self.scorer.score(pairs, progress=not disable_tqdm)):
            totals[owner] += score.logprob
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """Masked-diffusion sampling; the text is cut at the first of the `until` strings."""
        outputs: list[str | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(_freeze(request.args[1]), []).append(index)
        progress = tqdm(total=len(requests), desc="generate", disable=disable_tqdm)
        for indices in groups.values():
            gen_kwargs = dict(requests[indices[0]].args[1])
            until = _until(gen_kwargs)
            config = self._generation_config(gen_kwargs)
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                prompts = [self._fit_prompt(requests[i], config) for i in batch]
                canvas = sample(self.lm.model, self.lm.tokenizer, prompts, config, stop_texts=(*until, ANSWER_END))
                for i, row, prompt in zip(batch, canvas.tolist(), prompts):
                    outputs[i] = cut_at(self.lm.answer(row, len(prompt)), until)
                    self.cache_hook.add_partial("generate_until", requests[i].args, outputs[i])
                progress.update(len(batch))
        progress.close()
        return [text or "" for text in outputs]

    def apply_chat_template(self, chat_history: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """The Diffutron chat format; without a generation prompt a last assistant turn stays open."""
        if not add_generation_prompt and chat_history and chat_history[-1]["role"] == "assistant":
            return render_chat(chat_history[:-1]) + chat_history[-1]["content"]
        return render_chat(chat_history)

    def _generation_config(self, gen_kwargs: dict[str, Any]) -> GenerationConfig:
        ignored = sorted(set(gen_kwargs) & set(_IGNORED_GEN_KWARGS))
        if ignored:
            log.warning("diffutron ignores the generation argument(s) %s", ", ".join(ignored))
        changes: dict[str, Any] = {}
        if "max_gen_toks" in gen_kwargs:
            changes["max_new_tokens"] = int(gen_kwargs["max_gen_toks"])
        if "temperature" in gen_kwargs:
            changes["temperature"] = float(gen_kwargs["temperature"])
        if gen_kwargs.get("do_sample") is False:
            changes["temperature"] = 0.0
        config = self.generation.replace(**changes)
        if not self._steps_given:  # one token per step unless steps were set (model card: N = S)
            config = config.replace(steps=config.max_new_tokens)
        return config

    def _fit_prompt(self, request: Instance, config: GenerationConfig) -> list[int]:
        ids = self.lm.encode(request.args[0])
        room = self.max_length - config.max_new_tokens
        if room < 1:
            raise DiffutronError(
                f"max_gen_toks={config.max_new_tokens} leaves no room for a prompt in the window of "
                f"{self.max_length} tokens"
            )
        ids, cut = cut_to_fit(ids, room)
        if cut:
            self.truncated[request.task_name or "unknown"] += 1
            self._warn_truncated(1, "prompts")
        if not ids:
            raise DiffutronError(f"request {request.doc_id} of {request.task_name} has an empty prompt")
        return ids

    def _warn_truncated(self, count: int, what: str) -> None:
        if count:
            log.warning(
                "%d %s longer than the model window of %d tokens were cut from the left",
                count,
                what,
                self.max_length,
            )


def cut_at(text: str, until: Sequence[str]) -> str:
    """`text` up to the earliest occurrence of any of the `until` strings."""
    end = min((text.find(stop) for stop in until if stop and stop in text), default=len(text))
    return text[:end]


def _until(gen_kwargs: dict[str, Any]) -> list[str]:
    until = gen_kwargs.get("until") or []
    if isinstance(until, str):
        until = [until]
    if not isinstance(until, list) or not all(isinstance(stop, str) for stop in until):
        raise DiffutronError(f"`until` must be a string or a list of strings, got {until!r}")
    return until


def _freeze(value: Any) -> Any:
    """A hashable copy of generation kwargs, for grouping requests that share them."""
    if isinstance(value, dict):
        return tuple(sorted((key, _freeze(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


def _batch_size(value: int | str | None) -> int | None:
    """A fixed batch size, or None for `auto` (lm-eval's `auto:N` too: sized once, for the device)."""
    if value is None or value == "auto" or (isinstance(value, str) and value.startswith("auto")):
        return None
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise DiffutronError(f"batch_size must be an integer or 'auto', got {value!r}") from None
    if size < 1:
        raise DiffutronError(f"batch_size must be >= 1, got {size}")
    return size
