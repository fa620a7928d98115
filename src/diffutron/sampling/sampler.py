"""The masked-diffusion sampler of the Diffutron model card (docs/reference-behaviour.md, section 3), made cheap.

Every step still runs the encoder over the whole canvas, but logits, repetition penalty,
noise and confidence are computed only for the positions the reference may commit: the masks
up to the end of the current block (those of earlier blocks stay eligible while the model
keeps choosing the mask token there); finished answers are detected on token ids.
At temperature 0 the canvas is token-for-token the reference's.

Beyond exact output (docs/fast-generation.md), the commit rule can be a parallel-decoding one
(`sampling/commit.py`) and the encoder pass can reuse a block cache (`sampling/cache.py`).
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
from diffutron.sampling.cache import BlockCache
from diffutron.sampling.commit import commit_rule
from diffutron.sampling.config import GenerationConfig, checked_config
from diffutron.sampling.stopping import AnswerEnd
from diffutron.sampling.streams import RowStreams


@dataclass(frozen=True)
class StepEvent:
    """What one model call changed; handed to the `callback` of `sample` / `denoise`."""

    canvas: torch.Tensor  # (rows, width) after this step's commits
    committed: torch.Tensor  # (rows, width) bool, positions filled at this step (given a token)
    block: int
    calls: int  # model calls so far
    confidence: torch.Tensor | None = None  # (rows, width) float32: P(token) where committed, NaN elsewhere
    finished: torch.Tensor | None = None  # (rows,) bool on the CPU, rows the sampler no longer works on
    dropped: torch.Tensor | None = None  # (rows,) bool on the CPU, rows a callback asked to stop (see `drop`)

    def drop(self, row: int) -> None:
        """Stop working on `row` (its answer is no longer wanted: a client went away); the call ends
        once every row is finished or dropped."""
        if self.dropped is None:
            raise DiffutronError("this step event comes from a sampler that cannot drop rows")
        self.dropped[row] = True


StepCallback = Callable[[StepEvent], object]  # its return value is ignored


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
    row_seeds: Sequence[int | None] | None = None,
) -> torch.LongTensor:
    """Generate `config.max_new_tokens` tokens after each prompt; returns the full canvas.

    `prompts` are token id lists (encoded without special tokens for chat prompts). With
    `early_stop`, decoding ends once every row's answer is complete (a stop token or one
    of `stop_texts` committed with everything before it decided); masks may remain after it.
    Row i draws its random numbers from its own stream: seeded `row_seeds[i]` if given, else
    `config.seed + i` (`sampling/streams.py`), so a seeded row's answer does not depend on its batch.
    """
    config = checked_config(config)
    ids = SpecialIds.from_tokenizer(tokenizer)
    if not prompts:
        raise DiffutronError("no prompts given")
    for row, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise DiffutronError(f"prompt {row} is empty: give some text to answer or continue")
        if ids.mask in prompt:
            raise DiffutronError(f"prompt {row} contains the mask token; to fill gaps inside a text use infill")
    device = next(model.parameters()).device
    canvas = build_canvas(prompts, config.max_new_tokens, ids, device)
    return denoise(
        model,
        tokenizer,
        canvas,
        config,
        stop_texts=stop_texts if config.early_stop else None,
        callback=callback,
        row_seeds=row_seeds,
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
    row_seeds: Sequence[int | None] | None = None,
) -> torch.LongTensor:
    """Fill every mask of `canvas` (rows with equally many masks), block by block in order.

    Block b of a row is its masks number b*L .. (b+1)*L-1 counted left to right, which for
    a generation canvas is exactly the reference's positional block. A step may fill any mask
    up to the end of the current block: a position where the model chose the mask token stays
    open in later steps and blocks (docs/reference-behaviour.md, section 3). `stop_texts=None`
    disables early stopping; otherwise stop tokens and those texts end a row's answer.
    Random streams per row as in `sample`.
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
    forward = _forward(model, parts, config)
    padded = rows > 1 and bool((canvas == ids.eos).any())
    attention_mask = (canvas != ids.eos).long() if padded else None  # None spares the model a check per call
    given = ~region_mask & (canvas != ids.eos)
    streams = RowStreams.for_rows(rows, config.seed, row_seeds, canvas.device)
    stopper = AnswerEnd(tokenizer, region, ids.mask, ids.stops, stop_texts) if stop_texts is not None else None
    finished = [False] * rows  # host flags: reading them costs no sync
    dropped = torch.zeros(rows, dtype=torch.bool)  # on the CPU, where callbacks set them
    working = torch.ones(rows, dtype=torch.bool, device=canvas.device)  # device copy of "not done"
    ended_rows = 0  # how many rows `working` has switched off
    num_blocks = math.ceil(total / config.block_length)
    rule = commit_rule(config, steps_per_block=math.ceil(config.steps / num_blocks))
    calls = 0
    for block in range(num_blocks):
        block_start = block * config.block_length
        open_positions = region[:, : block_start + config.block_length]  # every mask up to the block's end
        for step, budget in enumerate(rule.budgets(open_positions.shape[1] - block_start, streams)):
            still_masked = (canvas.gather(1, open_positions) == ids.mask) & working[:, None]
            if budget is not None:  # a row with nothing to commit at this call draws nothing either
                still_masked &= (budget.on_device > 0)[:, None]
            # the step's one read before the model call: per row, the masks due and those of earlier blocks
            due, earlier = torch.stack([still_masked.sum(dim=1), still_masked[:, :block_start].sum(dim=1)]).tolist()
            if rule.until_filled and not any(due):
                break
            refresh = step == 0 or (config.refresh_every is not None and step % config.refresh_every == 0)
            hidden = forward(
                _model_input(canvas, given, ids, config),
                _doubled(attention_mask, config),
                _recomputed_positions(open_positions, still_masked, block_start, max(earlier)),
                refresh,
            )
            candidates, confidence, probability = _predict(
                parts, hidden, canvas, given, open_positions, still_masked, due, ids, config, streams
            )
            committed = rule.choose(confidence, budget)
            canvas = torch.where(committed, candidates, canvas)
            calls += 1
            if stopper is not None:
                finished = stopper.update(canvas)
            if callback is not None:
                filled = committed & (canvas != ids.mask)  # a mask written back fills nothing
                callback(
                    StepEvent(
                        canvas=canvas,
                        committed=filled,
                        block=block,
                        calls=calls,
                        confidence=torch.where(filled, probability, math.nan),
                        finished=torch.tensor(finished) | dropped,
                        dropped=dropped,
                    )
                )
            done = finished if callback is None else [f or d for f, d in zip(finished, dropped.tolist(), strict=True)]
            if all(done):
                return canvas
            if sum(done) != ended_rows:  # a row just ended: upload the new flags (the only upload in the loop)
                working = torch.tensor([not row_done for row_done in done], device=canvas.device)
                ended_rows = sum(done)
    return canvas


Forward = Callable[[torch.Tensor, "torch.Tensor | None", torch.Tensor, bool], torch.Tensor]


def _forward(model: PreTrainedModel, parts: MaskedLMParts, config: GenerationConfig) -> Forward:
    """Hidden states of a canvas: a plain encoder pass, or one reusing a block cache.

    Called as forward(input_ids, attention_mask, recomputed_positions, refresh); the plain pass
    ignores the last two.
    """
    if config.cache == "none":
        return lambda input_ids, attention_mask, _block, _refresh: parts.hidden(input_ids, attention_mask)
    return BlockCache(model, config.cache).hidden


def _recomputed_positions(
    open_positions: torch.Tensor, still_masked: torch.Tensor, block_start: int, width: int
) -> torch.Tensor:
    """What a cached step must recompute: the block, led by the masks of earlier blocks still open.

    `width` is the most such masks any row has. Rows with fewer repeat their block's first position
    (same query, same result), so that the first column is each row's earliest position (where the
    prefix cache starts).
    """
    block = open_positions[:, block_start:]
    if width == 0:
        return block
    earlier = still_masked[:, :block_start]
    first_open = (~earlier).to(torch.int8).argsort(dim=1, stable=True)[:, :width]
    padding = torch.arange(width, device=block.device) >= earlier.sum(dim=1, keepdim=True)
    leftover = torch.where(padding, block[:, :1], open_positions.gather(1, first_open))
    return torch.cat([leftover, block], dim=1)


def _model_input(canvas: torch.Tensor, given: torch.Tensor, ids: SpecialIds, config: GenerationConfig) -> torch.Tensor:
    """The canvas; with CFG followed by its unconditional copy (given tokens masked)."""
    if config.cfg_scale == 0:
        return canvas
    return torch.cat([canvas, torch.where(given, ids.mask, canvas)])


def _doubled(attention_mask: torch.Tensor | None, config: GenerationConfig) -> torch.Tensor | None:
    if attention_mask is None or config.cfg_scale == 0:
        return attention_mask
    return torch.cat([attention_mask, attention_mask])


def _predict(
    parts: MaskedLMParts,
    hidden: torch.Tensor,
    canvas: torch.Tensor,
    given: torch.Tensor,
    open_positions: torch.Tensor,
    still_masked: torch.Tensor,
    due: list[int],
    ids: SpecialIds,
    config: GenerationConfig,
    streams: RowStreams,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidate tokens, ranking scores (-inf where nothing is due) and the candidates' probabilities (NaN).

    `due` counts the True entries of each row of `still_masked` (known on the host, so finding
    them costs no sync). The score is the probability with low-confidence remasking, a random
    number otherwise.
    """
    rows, width = canvas.shape
    row_index, column = torch.nonzero_static(still_masked, size=sum(due)).unbind(dim=1)
    position = open_positions[row_index, column]
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
        _penalize(logits, row_index, canvas, given, ids, config)
    if config.temperature > 0:
        noise = streams.rand(due, logits.shape[1], dtype=torch.float64)
        tokens = (logits.to(torch.float64).exp() / (-noise.log()) ** config.temperature).argmax(dim=-1)
    else:
        tokens = logits.argmax(dim=-1)
    probabilities = logits.softmax(dim=-1).gather(1, tokens[:, None]).squeeze(1)
    if config.remasking == "low_confidence":
        scores = probabilities
    else:
        scores = streams.rand(due)

    candidates = torch.full_like(canvas, ids.mask)
    candidates[row_index, position] = tokens
    confidence = torch.full(canvas.shape, -math.inf, device=canvas.device)
    confidence[row_index, position] = scores
    probability = torch.full(canvas.shape, math.nan, device=canvas.device)
    probability[row_index, position] = probabilities.float()
    return candidates, confidence, probability


def _penalize(
    logits: torch.Tensor,
    row_index: torch.Tensor,
    canvas: torch.Tensor,
    given: torch.Tensor,
    ids: SpecialIds,
    config: GenerationConfig,
) -> None:
    """In place: for each token on the row's canvas (or its generated part) but mask and EOS, a logit > 0
    is divided by the penalty, others multiplied.

    One gather and one scatter over the canvas's columns, no host sync: a token that appears twice
    writes the same value twice, and the vocabulary-wide logits are never swept.
    """
    source = canvas if config.penalty_scope == "canvas" else torch.where(given, ids.mask, canvas)
    columns = source[row_index]  # (positions, width): each position's row of tokens
    values = logits.gather(1, columns)
    penalty = config.repetition_penalty
    penalized = torch.where(values > 0, values / penalty, values * penalty)
    exempt = (columns == ids.mask) | (columns == ids.eos)
    logits.scatter_(1, columns, torch.where(exempt, values, penalized))
