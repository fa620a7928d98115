"""The masked-diffusion sampler of the Diffutron model card (SPEC section 3), made cheap.

Every step still runs the encoder over the whole canvas, but logits, repetition penalty,
noise and confidence are computed only for the still-masked positions of the current block,
the only ones the reference ever commits; finished answers are detected on token ids.
At temperature 0 the canvas is token-for-token the reference's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from diffutron.errors import DiffutronError
from diffutron.model.chat import ANSWER_END
from diffutron.model.parts import MIN_GEMM_ROWS, MaskedLMParts
from diffutron.model.tokens import SpecialIds
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.schedule import stochastic_transfer_counts, transfer_counts
from diffutron.sampling.stopping import AnswerEnd


@dataclass(frozen=True)
class StepEvent:
    """What one model call changed; handed to the `callback` of `sample` / `denoise`."""

    canvas: torch.Tensor  # (rows, width) after this step's commits
    committed: torch.Tensor  # (rows, width) bool, positions filled at this step
    block: int
    calls: int  # model calls so far


StepCallback = Callable[[StepEvent], None]


def build_canvas(
    prompts: Sequence[Sequence[int]], max_new_tokens: int, ids: SpecialIds, device: torch.device
) -> torch.Tensor:
    """Prompts left-aligned, each followed by exactly `max_new_tokens` masks, EOS padding right."""
    width = max(len(prompt) for prompt in prompts) + max_new_tokens
    canvas = torch.full((len(prompts), width), ids.eos, dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        canvas[row, : len(prompt)] = torch.as_tensor(list(prompt), dtype=torch.long)
        canvas[row, len(prompt) : len(prompt) + max_new_tokens] = ids.mask
    return canvas


@torch.no_grad()
def sample(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    config: GenerationConfig | None = None,
    *,
    stop_texts: Sequence[str] = (ANSWER_END,),
    callback: StepCallback | None = None,
) -> torch.LongTensor:
    """Generate `config.max_new_tokens` tokens after each prompt; returns the full canvas.

    `prompts` are token id lists (encoded without special tokens for chat prompts). With
    `early_stop`, decoding ends once every row's answer is complete (a stop token or one
    of `stop_texts` committed with everything before it decided); masks may remain after it.
    """
    config = config or GenerationConfig()
    ids = SpecialIds.from_tokenizer(tokenizer)
    if not prompts:
        raise DiffutronError("no prompts given")
    for row, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise DiffutronError(f"prompt {row} is empty: give some text to answer or continue")
        if ids.mask in prompt:
            raise DiffutronError(
                f"prompt {row} contains the mask token; to fill gaps inside a text use infill"
            )
    device = next(model.parameters()).device
    canvas = build_canvas(prompts, config.max_new_tokens, ids, device)
    return denoise(
        model, tokenizer, canvas, config, stop_texts=stop_texts if config.early_stop else None,
        callback=callback,
    )


@torch.no_grad()
def denoise(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    canvas: torch.Tensor,
    config: GenerationConfig,
    *,
    stop_texts: Sequence[str] | None = None,
    callback: StepCallback | None = None,
) -> torch.LongTensor:
    """Fill every mask of `canvas` (rows with equally many masks), block by block in order.

    Block b of a row is its masks number b*L .. (b+1)*L-1 counted left to right, which for
    a generation canvas is exactly the reference's positional block. `stop_texts=None`
    disables early stopping; otherwise stop tokens and those texts end a row's answer.
    """
    ids = SpecialIds.from_tokenizer(tokenizer)
    canvas = canvas.clone()
    rows, width = canvas.shape
    region_mask = canvas == ids.mask
    masks_per_row = region_mask.sum(dim=1)
    if not bool((masks_per_row == masks_per_row[0]).all()):
        raise DiffutronError("every row must have the same number of masks to fill")
    total = int(masks_per_row[0])
    if total == 0:
        return canvas
    region = region_mask.nonzero()[:, 1].view(rows, total)  # mask positions, in order per row

    parts = MaskedLMParts(model)
    attention_mask = (canvas != ids.eos).long() if rows > 1 else None
    given = ~region_mask & (canvas != ids.eos)
    generator = _generator(config.seed, canvas.device)
    stopper = (
        AnswerEnd(tokenizer, region, ids.mask, ids.stops, stop_texts) if stop_texts is not None else None
    )
    done = torch.zeros(rows, dtype=torch.bool, device=canvas.device)
    num_blocks = math.ceil(total / config.block_length)
    steps_per_block = math.ceil(config.steps / num_blocks)
    calls = 0
    for block in range(num_blocks):
        block_positions = region[:, block * config.block_length : (block + 1) * config.block_length]
        counts = _block_counts(block_positions.shape[1], rows, steps_per_block, config, generator)
        for step in range(counts.shape[1]):
            still_masked = (canvas.gather(1, block_positions) == ids.mask) & ~done[:, None]
            candidates, confidence = _predict(
                parts, canvas, attention_mask, given, block_positions, still_masked, ids, config,
                generator,
            )
            committed = _commit(canvas, candidates, confidence, counts[:, step], done)
            calls += 1
            if stopper is not None:
                done = stopper.update(canvas)
            if callback is not None:
                callback(StepEvent(canvas=canvas, committed=committed, block=block, calls=calls))
            if bool(done.all()):
                return canvas
    return canvas


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)


def _block_counts(
    masked: int, rows: int, steps: int, config: GenerationConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """Tokens to commit per row (dim 0) at each model call of the block (dim 1)."""
    if config.stochastic_transfer:
        return stochastic_transfer_counts(torch.full((rows,), masked), steps, generator)
    return torch.tensor(transfer_counts(masked, steps), dtype=torch.long).expand(rows, -1)


def _predict(
    parts: MaskedLMParts,
    canvas: torch.Tensor,
    attention_mask: torch.Tensor | None,
    given: torch.Tensor,
    block_positions: torch.Tensor,
    still_masked: torch.Tensor,
    ids: SpecialIds,
    config: GenerationConfig,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate tokens and confidences on a (rows, width) grid; -inf where nothing is due."""
    rows, width = canvas.shape
    model_input = canvas
    if config.cfg_scale > 0:
        unconditional = torch.where(given, ids.mask, canvas)
        model_input = torch.cat([canvas, unconditional])
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask, attention_mask])
    hidden = parts.hidden(model_input, attention_mask)

    row_index, column = still_masked.nonzero(as_tuple=True)
    position = block_positions[row_index, column]
    sources = [row_index, row_index + rows] if config.cfg_scale > 0 else [row_index]
    if parts.split and hidden.shape[0] * hidden.shape[1] >= MIN_GEMM_ROWS:
        logits = parts.logits(torch.cat([hidden[source, position] for source in sources]))
        logits = logits.chunk(len(sources))
    else:  # a tiny canvas: the full pass is as cheap, and rounds exactly like the reference
        grid = parts.logits(hidden, pad=False)
        logits = [grid[source, position] for source in sources]
    if config.cfg_scale > 0:
        conditional, unconditional_logits = logits
        logits = unconditional_logits + (config.cfg_scale + 1) * (conditional - unconditional_logits)
    else:
        logits = logits[0]

    if config.repetition_penalty != 1.0:
        logits = _penalize(logits, _penalized_vocab(canvas, given, ids, config, logits.shape[1])[row_index],
                           config.repetition_penalty)
    if config.temperature > 0:
        noise = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=generator)
        tokens = (logits.to(torch.float64).exp() / (-noise.log()) ** config.temperature).argmax(dim=-1)
    else:
        tokens = logits.argmax(dim=-1)
    if config.remasking == "low_confidence":
        scores = logits.softmax(dim=-1).gather(1, tokens[:, None]).squeeze(1)
    else:
        scores = torch.rand(tokens.shape, device=logits.device, generator=generator)

    candidates = torch.full_like(canvas, ids.mask)
    candidates[row_index, position] = tokens
    confidence = torch.full(canvas.shape, -math.inf, device=canvas.device)
    confidence[row_index, position] = scores
    return candidates, confidence


def _penalized_vocab(
    canvas: torch.Tensor, given: torch.Tensor, ids: SpecialIds, config: GenerationConfig, vocab: int
) -> torch.Tensor:
    """(rows, vocab) bool: the distinct tokens on the canvas (or only the generated part)."""
    source = canvas if config.penalty_scope == "canvas" else torch.where(given, ids.mask, canvas)
    present = torch.zeros((canvas.shape[0], vocab), dtype=torch.bool, device=canvas.device)
    present.scatter_(1, source, True)
    present[:, [ids.mask, ids.eos]] = False
    return present


def _penalize(logits: torch.Tensor, present: torch.Tensor, penalty: float) -> torch.Tensor:
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(present, penalized, logits)


def _commit(
    canvas: torch.Tensor,
    candidates: torch.Tensor,
    confidence: torch.Tensor,
    counts: torch.Tensor,
    done: torch.Tensor,
) -> torch.Tensor:
    """Write the `count` most confident candidates of each unfinished row into the canvas."""
    committed = torch.zeros_like(canvas, dtype=torch.bool)
    left = torch.isfinite(confidence).sum(dim=1)
    for row in range(canvas.shape[0]):
        count = min(int(counts[row]), int(left[row]))
        if done[row] or count == 0:
            continue
        chosen = torch.topk(confidence[row], k=count).indices
        committed[row, chosen] = True
    canvas[committed] = candidates[committed]
    return committed
