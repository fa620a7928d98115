"""The masked-diffusion sampler of the Diffutron model card (docs/reference-behaviour.md, section 3), made cheap.

Every step still runs the encoder over the whole canvas, but logits, repetition penalty,
noise and confidence are computed only for the positions the reference may commit: the masks
up to the end of the current block (those of earlier blocks stay eligible while the model
keeps choosing the mask token there); finished answers are detected on token ids.
At temperature 0 the canvas is token-for-token the reference's.

Beyond exact output (docs/fast-generation.md), the commit rule can be a parallel-decoding one
(`sampling/commit.py`) and the encoder pass can reuse a block cache (`sampling/cache.py`).

The rows live in a `Decoder`, each at its own place in its own block schedule, so rows can join
and leave between model calls: the server's continuous batching (docs/serving.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from diffutron.errors import DiffutronError
from diffutron.model.chat import ANSWER_END
from diffutron.model.parts import MIN_GEMM_ROWS, MaskedLMParts
from diffutron.model.tokens import SpecialIds
from diffutron.sampling.cache import BlockCache
from diffutron.sampling.config import GenerationConfig, checked_config
from diffutron.sampling.predictions import CommitLogprobs, Predictions
from diffutron.sampling.processors import (
    DuePositions,
    SlotConstraint,
    TemperatureDraw,
    logits_processors,
    truncation_warpers,
)
from diffutron.sampling.rules import Budget, Plan, commit_rule
from diffutron.sampling.stopping import AnswerEnd, AnswerStops
from diffutron.sampling.streams import RowStreams, row_seeds_for


@dataclass(frozen=True)
class StepEvent:
    """What one model call changed; handed to the `callback` of `sample` / `denoise`."""

    canvas: torch.Tensor  # (rows, width) after this step's commits
    committed: torch.Tensor  # (rows, width) bool, positions filled at this step (given a token)
    blocks: tuple[int, ...]  # each row's current block
    calls: int  # model calls of the decoder so far
    probability: torch.Tensor | None = None  # (rows, width) float32: P(token) where committed, NaN elsewhere
    finished: torch.Tensor | None = None  # (rows,) bool on the CPU, rows the sampler no longer works on
    decoder: Decoder | None = None  # the decoder that made the call (see `drop`)
    revoked: torch.Tensor | None = None  # (rows, width) bool, decided positions masked again (rules that revise)
    logprobs: CommitLogprobs | None = None  # with `Decoder(logprobs=k)`: the committed tokens' log-probabilities

    @property
    def confidence(self) -> torch.Tensor | None:
        """The former name of `probability` (not the ranking score, which is random under random remasking)."""
        return self.probability

    def drop(self, row: int) -> None:
        """Stop working on `row` (its answer is no longer wanted: a client went away): `Decoder.drop`."""
        if self.decoder is None:
            raise DiffutronError("this step event comes from a sampler that cannot drop rows")
        self.decoder.drop([row])


StepCallback = Callable[[StepEvent], object]  # its return value is ignored


def build_canvas(
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    ids: SpecialIds,
    device: torch.device,
    suffix: Sequence[int] = (),
) -> torch.Tensor:
    """Prompts left-aligned, each followed by exactly `max_new_tokens` masks (then `suffix`, for
    filling in the middle), EOS padding right."""
    if not prompts:
        raise DiffutronError("no prompts given")
    for row, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise DiffutronError(f"prompt {row} is empty: give some text to answer or continue")
        if ids.mask in prompt:
            raise DiffutronError(f"prompt {row} contains the mask token; to fill gaps inside a text use infill")
    if ids.mask in suffix:
        raise DiffutronError("the suffix contains the mask token; to fill gaps inside a text use infill")
    width = max(len(prompt) for prompt in prompts) + max_new_tokens + len(suffix)
    canvas = torch.full((len(prompts), width), ids.eos, dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        end = len(prompt) + max_new_tokens
        canvas[row, : len(prompt)] = torch.as_tensor(list(prompt), dtype=torch.long)
        canvas[row, len(prompt) : end] = ids.mask
        canvas[row, end : end + len(suffix)] = torch.as_tensor(list(suffix), dtype=torch.long)
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
    suffix: Sequence[int] = (),
    logprobs: int | None = None,
) -> torch.LongTensor:
    """Generate `config.max_new_tokens` tokens after each prompt (before `suffix`, if given: filling in
    the middle); returns the full canvas. `logprobs`: see `Decoder`.

    `prompts` are token id lists (encoded without special tokens for chat prompts). With
    `early_stop`, decoding ends once every row's answer is complete (a stop token or one
    of `stop_texts` committed with everything before it decided); masks may remain after it.
    Row i draws its random numbers from its own stream: seeded `row_seeds[i]` if given, else
    `config.seed + i` (`sampling/streams.py`), so a seeded row's answer does not depend on its batch.
    """
    config = checked_config(config)
    device = next(model.parameters()).device
    canvas = build_canvas(prompts, config.max_new_tokens, SpecialIds.from_tokenizer(tokenizer), device, suffix)
    return denoise(
        model,
        tokenizer,
        canvas,
        config,
        stop_texts=stop_texts if config.early_stop else None,
        callback=callback,
        row_seeds=row_seeds,
        logprobs=logprobs,
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
    logprobs: int | None = None,
    constraint: SlotConstraint | None = None,
) -> torch.LongTensor:
    """Fill every mask of `canvas` (rows with equally many masks), block by block in order.

    Block b of a row is its masks number b*L .. (b+1)*L-1 counted left to right, which for
    a generation canvas is exactly the reference's positional block. A step may fill any mask
    up to the end of the current block: a position where the model chose the mask token stays
    open in later steps and blocks (docs/reference-behaviour.md, section 3). `stop_texts=None`
    disables early stopping; otherwise stop tokens and those texts end a row's answer.
    Random streams per row as in `sample`. `constraint` restricts positions to token sets
    (structured output, `sampling/structured/`).
    """
    ids = SpecialIds.from_tokenizer(tokenizer)
    masks_per_row = (canvas == ids.mask).sum(dim=1)
    if not bool((masks_per_row == masks_per_row[0]).all()):
        raise DiffutronError("every row must have the same number of masks to fill")
    masks = int(masks_per_row[0])
    if masks == 0:
        return canvas.clone()
    if row_seeds is None:
        row_seeds = row_seeds_for(config.seed, canvas.shape[0])
    token_sets = None if constraint is None else constraint.sets
    decoder = Decoder(
        model, tokenizer, config, masks=masks, stop_texts=stop_texts, token_sets=token_sets, logprobs=logprobs
    )
    decoder.add(canvas, row_seeds, token_sets=None if constraint is None else constraint.positions)
    while decoder.step(callback):
        pass
    return decoder.canvas


@dataclass
class _OnDevice:
    """The rows' progress as tensors, uploaded again only when a row joins, leaves, ends or changes block."""

    working: torch.Tensor  # (rows,) bool
    block_start: torch.Tensor  # (rows,) long, index in the row's region where its block starts
    block_end: torch.Tensor  # (rows,) long
    began: torch.Tensor  # (rows,) long, the decoder's call count when the row's block began
    plans: torch.Tensor | None  # (rows, calls + 1) long counts per call, a 0 last; None for unplanned rules
    attention: torch.Tensor | None  # (rows, width) long, None when no row has padding
    done: list[bool]  # the host flags these were built from


@dataclass
class _Row:
    """One row's place in its block schedule, on the host."""

    width: int  # the row's own canvas width (the rest is padding)
    began: int  # the decoder's calls when its current block began
    block: int = -1  # its current block; -1 before its first
    plan: Plan = ()
    limit: int = 0  # the most calls that block may take
    exhausted: bool = False  # past its last block
    dropped: bool = False  # its answer is no longer wanted (`Decoder.drop`)


class _RowState:
    """Everything the decoder holds per row: the host records, the canvas and what it masks on the
    device, and the helpers' per-row parts (random streams, answer ends, cached keys and values).
    `keep` narrows them all to the rows that stay."""

    def __init__(
        self, device: torch.device, masks: int, ids: SpecialIds, stopper: AnswerEnd | None, cache: BlockCache | None
    ) -> None:
        self.ids = ids
        self.masks = masks
        self.records: list[_Row] = []
        self.canvas = torch.empty((0, 0), dtype=torch.long, device=device)
        self.region = torch.empty((0, masks), dtype=torch.long, device=device)  # mask positions, in order
        self.attention = torch.empty((0, 0), dtype=torch.bool, device=device)
        self.given = torch.empty((0, 0), dtype=torch.bool, device=device)
        self.token_sets = torch.empty((0, 0), dtype=torch.long, device=device)  # -1: any token
        self.streams = RowStreams([], device)
        self.stopper = stopper
        self.cache = cache

    def __len__(self) -> int:
        return len(self.records)

    def add(
        self,
        canvas: torch.Tensor,
        seeds: Sequence[int | None],
        calls: int,
        stops: Sequence[AnswerStops] | None = None,
        token_sets: torch.Tensor | None = None,
    ) -> None:
        """Append the rows of `canvas` (on the device, `masks` masks each), their blocks not begun; `stops`:
        each row's own end, if not the stopper's; `token_sets` (the rows' positions' allowed-token
        sets) None: any token anywhere."""
        rows, width = canvas.shape
        eos = self.ids.eos
        region_mask = canvas == self.ids.mask
        attention = canvas != eos
        width = max(width, self.canvas.shape[1])
        self.canvas = torch.cat([_widen(self.canvas, width, eos), _widen(canvas, width, eos)])
        self.attention = torch.cat([_widen(self.attention, width, False), _widen(attention, width, False)])
        self.given = torch.cat([_widen(self.given, width, False), _widen(~region_mask & attention, width, False)])
        sets = torch.full_like(canvas, -1) if token_sets is None else token_sets.to(canvas.device)
        self.token_sets = torch.cat([_widen(self.token_sets, width, -1), _widen(sets, width, -1)])
        self.region = torch.cat([self.region, region_mask.nonzero()[:, 1].view(rows, self.masks)])
        columns = torch.arange(1, canvas.shape[1] + 1, device=canvas.device)
        self.records += [_Row(row_width, calls) for row_width in (attention * columns).amax(dim=1).tolist()]
        self.streams.add(seeds)
        if self.stopper is not None:
            self.stopper.add(rows, stops)

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only `rows`, in that order; the canvas narrows to the widest left."""
        index = torch.tensor(rows, dtype=torch.long, device=self.canvas.device)
        self.records = [self.records[row] for row in rows]
        width = max((record.width for record in self.records), default=0)
        self.canvas = self.canvas[index, :width]
        self.attention = self.attention[index, :width]
        self.given = self.given[index, :width]
        self.token_sets = self.token_sets[index, :width]
        self.region = self.region[index]
        self.streams.keep(rows)
        for helper in (self.stopper, self.cache):
            if helper is not None:
                helper.keep(rows)

    def done(self) -> list[bool]:
        """Per row: its answer is complete, its blocks are all decoded, or it was dropped."""
        finished = self.stopper.done if self.stopper is not None else [False] * len(self)
        return [ended or row.exhausted or row.dropped for ended, row in zip(finished, self.records, strict=True)]


class Decoder:
    """Rows denoised together, each at its own place in its own block schedule; rows join and leave between calls.

    `add` puts canvases in, `step` makes one model call for every row still at work, `drop` stops
    working on rows and `remove` takes rows out. A row decodes as it would alone: its blocks, plans
    and random draws are its own, and the other rows only share the model call (which can change
    float rounding, see docs/serving.md). That is what lets a server add requests to a running
    batch and answer finished ones at once.

    With a block cache each row refreshes its keys and values at its own calls: a call where some
    rows refresh runs their whole canvases as a second pass. With stochastic transfer the rows'
    plans are drawn and read back together, once per block, so in that mode the rows go from block
    to block together (a row whose block is over waits for the others) and only an empty decoder
    takes rows (`continuous` is False).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: GenerationConfig,
        *,
        masks: int,
        stop_texts: Sequence[str] | None = None,
        token_sets: torch.Tensor | None = None,
        logprobs: int | None = None,
    ) -> None:
        """`token_sets` (sets, vocabulary) bool: the sets that rows' positions may be restricted to (`add`).
        `logprobs`: with k, each `StepEvent` carries the committed tokens' log-probabilities and the k
        likeliest alternatives of the distribution each was drawn from (`CommitLogprobs`)."""
        self.ids = SpecialIds.from_tokenizer(tokenizer)
        self.config = config
        self.masks = masks  # per row
        self.parts = MaskedLMParts(model)
        self.continuous = not config.stochastic_transfer
        self.blocks = math.ceil(masks / config.block_length)
        self.rule = commit_rule(config, steps_per_block=math.ceil(config.steps / self.blocks))
        self.device = next(model.parameters()).device
        stopper = AnswerEnd(tokenizer, self.ids.mask, self.ids.stops, stop_texts) if stop_texts is not None else None
        cache = BlockCache(model, config.cache) if config.cache != "none" else None
        self.state = _RowState(self.device, masks, self.ids, stopper, cache)
        self.token_sets = token_sets
        vocabulary = getattr(getattr(model, "config", None), "vocab_size", None) or len(tokenizer)
        self.processors = logits_processors(config, self.ids, token_sets, vocabulary)
        self.draw = TemperatureDraw(config.temperature, self.state.streams, truncation_warpers(config))
        self.logprobs = logprobs
        self.calls = 0
        self._done: list[bool] = []  # per row, as of the last call (and the adds, drops and removes since)
        self._padded = False
        self._columns = torch.arange(masks, device=self.device)
        self._on_device: _OnDevice | None = None

    @property
    def rows(self) -> int:
        return len(self.state)

    @property
    def canvas(self) -> torch.Tensor:
        return self.state.canvas

    def done(self) -> list[bool]:
        """Per row: its answer is complete, its blocks are all decoded, or it was dropped."""
        return list(self._done)

    def add(
        self,
        canvas: torch.Tensor,
        seeds: Sequence[int | None],
        stops: Sequence[AnswerStops] | None = None,
        token_sets: torch.Tensor | None = None,
    ) -> None:
        """Append rows (each with exactly `masks` masks); row i draws from a stream seeded `seeds[i]`
        and, with early stopping, ends at `stops[i]` if given (a request's stop strings). `token_sets`
        (rows, width) long names the set of the decoder's `token_sets` each position is restricted
        to (-1: any token), None for free rows."""
        rows = canvas.shape[0]
        if len(seeds) != rows:
            raise DiffutronError(f"row_seeds has {len(seeds)} entries for {rows} rows: give one per row")
        if self.rows and not self.continuous:
            raise DiffutronError(
                "with stochastic transfer the rows go from block to block together: a running decoder takes no new rows"
            )
        if token_sets is not None and (self.token_sets is None or token_sets.shape != canvas.shape):
            raise DiffutronError("token_sets needs a decoder built with token sets, and one entry per canvas position")
        canvas = canvas.to(self.device)
        if not bool(((canvas == self.ids.mask).sum(dim=1) == self.masks).all()):
            raise DiffutronError(f"every row must have {self.masks} masks to fill")
        self.state.add(canvas, seeds, self.calls, stops, token_sets)
        self._done += [False] * rows
        self._changed()

    def drop(self, rows: Collection[int]) -> None:
        """Stop working on `rows` (their answers are no longer wanted: a client went away); `step` ends
        once every row is finished or dropped, and `remove` takes them out."""
        for row in rows:
            self.state.records[row].dropped = True
            self._done[row] = True

    def remove(self, rows: Collection[int]) -> None:
        """Take rows out (their answers are read or no longer wanted); the canvas narrows to the widest left."""
        if not self.continuous:
            raise DiffutronError("with stochastic transfer rows can only be dropped, not removed")
        kept = [row for row in range(self.rows) if row not in rows]
        self.state.keep(kept)
        self._done = [self._done[row] for row in kept]
        self._changed()

    @torch.no_grad()
    def step(self, callback: StepCallback | None = None) -> bool:
        """One model call for every row still at work; False, without a call, once none is left."""
        done = self._done
        self._start_blocks(done)
        if all(done):
            return False
        state = self._state(done)
        still_masked, budget = self._due(state)
        earlier_masks = still_masked & (self._columns < state.block_start[:, None])
        # the step's one read before the model call: per row, the masks due and those of earlier blocks
        due, earlier = torch.stack([still_masked.sum(dim=1), earlier_masks.sum(dim=1)]).tolist()
        hidden = self._hidden(state, earlier_masks, max(earlier), done)
        predictions = self._predict(hidden, still_masked, due, state.block_start)
        committed = self.rule.choose(predictions, budget)
        self.state.canvas = torch.where(committed, predictions.tokens, self.canvas)
        revoked = self.rule.revoke(predictions, committed) if self.rule.revises else None
        if revoked is not None:
            self.state.canvas = self.canvas.masked_fill(revoked, self.ids.mask)
        self.calls += 1
        if self.state.stopper is not None or self.rule.until_filled:
            # the step's one read after the model call: the answers, for their ends and the full blocks
            answers = self.canvas.gather(1, self.state.region).tolist()
            if self.state.stopper is not None:
                self.state.stopper.update(answers)
            if self.rule.until_filled:
                self._end_full_blocks(answers, done)
        blocks = tuple(record.block for record in self.state.records)
        done = self._done = self.state.done()  # the one count of the step
        self._start_blocks(done)  # now, so that a row past its last block shows as done at once
        if callback is not None:
            filled_now = committed & (self.canvas != self.ids.mask)  # a mask written back fills nothing
            probability = torch.where(filled_now, predictions.probability, math.nan)
            finished = torch.tensor(done)
            logprobs = None if predictions.logprobs is None else predictions.logprobs.where(filled_now)
            event = StepEvent(
                self.canvas, filled_now, blocks, self.calls, probability, finished, self, revoked, logprobs
            )
            callback(event)
        return True

    def _hidden(self, state: _OnDevice, earlier_masks: torch.Tensor, earlier: int, done: list[bool]) -> torch.Tensor:
        """The encoder's last hidden states for this call (with CFG, the unconditional rows after the others)."""
        config = self.config
        model_input = _model_input(self.canvas, self.state.given, self.ids, config)
        attention = _doubled(state.attention, config)
        if self.state.cache is None:
            return self.parts.hidden(model_input, attention)
        block_width = min(config.block_length, self.masks)
        recomputed = _recomputed_positions(
            self.state.region, earlier_masks, state.block_start, state.block_end, block_width, earlier
        )
        return self.state.cache.hidden(model_input, attention, recomputed, self._refreshing(done))

    def _predict(
        self, hidden: torch.Tensor, still_masked: torch.Tensor, due: list[int], block_start: torch.Tensor
    ) -> Predictions:
        """The candidates at the positions due (`due` counts each row's True entries of `still_masked`,
        known on the host, so finding them costs no sync): logits, processors in order, the draw; and
        the ranking score, the `confidence` measure with low-confidence remasking, a random number otherwise.
        """
        config, canvas = self.config, self.canvas
        row_index, column = torch.nonzero_static(still_masked, size=sum(due)).unbind(dim=1)
        columns = self.state.region[row_index, column]
        sets = None if self.token_sets is None else self.state.token_sets[row_index, columns]
        positions = DuePositions(row_index, columns, due, canvas, self.state.given, sets)
        logits = _logits_at(self.parts, hidden, positions, guided=config.cfg_scale > 0)
        for processor in self.processors:
            logits = processor(logits, positions)
        tokens = self.draw(logits, positions)
        if config.remasking == "low_confidence":
            ranking = None
        else:
            ranking = self.state.streams.rand(due)
        offsets = column - block_start[row_index]
        predictions = Predictions(
            canvas.shape,
            row_index,
            positions.columns,
            tokens,
            logits,
            self.ids.mask,
            ranking,
            config.confidence,
            offsets,
            canvas[row_index, positions.columns] if self.rule.revises else None,
        )
        if self.logprobs is not None:
            predictions.logprobs = CommitLogprobs.at(predictions, self.draw.log_distribution(logits), self.logprobs)
        return predictions

    def _changed(self) -> None:
        self._padded = self.rows > 1 and not bool(self.state.attention.all())
        self._on_device = None

    def _block_end(self, block: int) -> int:
        """Where `block` ends in a row's region (the last block may be shorter)."""
        return min((block + 1) * self.config.block_length, self.masks)

    def _start_blocks(self, done: list[bool]) -> None:
        """Rows whose block is over start their next one (all together, when not `continuous`);
        a row past its last block is exhausted, and marked in `done`."""
        records = self.state.records
        over = [
            row for row, record in enumerate(records) if not done[row] and self.calls - record.began >= record.limit
        ]
        if not over or (not self.continuous and len(over) < done.count(False)):
            return
        starting: dict[int, list[int]] = {}
        for row in over:
            record = records[row]
            record.block += 1
            record.began = self.calls
            if record.block == self.blocks:
                record.exhausted = done[row] = True
            else:
                starting.setdefault(self._block_end(record.block) - record.block * self.config.block_length, []).append(
                    row
                )
        for masked, rows in starting.items():
            plans = self.rule.plans(masked, [self.state.streams.generators[row] for row in rows], self.device)
            for row, plan in zip(rows, plans, strict=True):
                records[row].plan = plan
                records[row].limit = masked if plan is None else len(plan)
        self._on_device = None

    def _state(self, done: list[bool]) -> _OnDevice:
        if self._on_device is not None and self._on_device.done == done:
            return self._on_device
        records = self.state.records
        blocks = [min(max(record.block, 0), self.blocks) for record in records]
        as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=self.device)  # noqa: E731
        plans = None
        if self.rule.planned:
            calls = max((len(record.plan) for record in records if record.plan is not None), default=0)
            padded = [[*record.plan, *[0] * (calls + 1 - len(record.plan))] for record in records]
            plans = as_tensor(padded).view(self.rows, calls + 1)
        self._on_device = _OnDevice(
            working=torch.tensor([not row_done for row_done in done], dtype=torch.bool, device=self.device),
            block_start=as_tensor([block * self.config.block_length for block in blocks]),
            block_end=as_tensor([self._block_end(block) for block in blocks]),
            began=as_tensor([record.began for record in records]),
            plans=plans,
            attention=self.state.attention.long() if self._padded else None,  # None spares the model a check per call
            done=list(done),
        )
        return self._on_device

    def _due(self, state: _OnDevice) -> tuple[torch.Tensor, Budget | None]:
        """(rows, masks) bool: the masks each row may fill at this call; and the count rule's budget."""
        in_block = self._columns < state.block_end[:, None]
        masked = self.canvas.gather(1, self.state.region) == self.ids.mask
        if self.rule.revises:  # the block's decided tokens are predicted again too
            masked |= self._columns >= state.block_start[:, None]
        still_masked = masked & in_block & state.working[:, None]
        if state.plans is None:
            return still_masked, None
        step = (self.calls - state.began).clamp(max=state.plans.shape[1] - 1)
        counts = [
            record.plan[self.calls - record.began]
            if record.plan is not None and self.calls - record.began < len(record.plan) and not row_done
            else 0
            for record, row_done in zip(self.state.records, state.done, strict=True)
        ]
        budget = Budget(tuple(counts), state.plans.gather(1, step[:, None]).squeeze(1))
        # a row with nothing to commit at this call draws nothing either
        return still_masked & (budget.on_device > 0)[:, None], budget

    def _refreshing(self, done: list[bool]) -> list[bool]:
        """Per row, whether its cached keys and values are renewed at this call: at its block's first call,
        and every `refresh_every` calls of it."""
        every = self.config.refresh_every
        steps = [self.calls - record.began for record in self.state.records]
        return [
            not row_done and (step == 0 or (every is not None and step % every == 0))
            for row_done, step in zip(done, steps, strict=True)
        ]

    def _end_full_blocks(self, answers: list[list[int]], done: list[bool]) -> None:
        """Rules `until_filled` end a row's block once no mask is left up to its end (`answers`: each row's
        region, read after the call)."""
        for row, tokens in enumerate(answers):
            record = self.state.records[row]
            if not done[row] and self.ids.mask not in tokens[: self._block_end(record.block)]:
                record.limit = self.calls - record.began


def _widen(tensor: torch.Tensor, width: int, fill: int | bool) -> torch.Tensor:
    """`tensor` (rows, w) padded on the right with `fill` to `width` columns."""
    if tensor.shape[1] >= width:
        return tensor
    return torch.cat([tensor, tensor.new_full((tensor.shape[0], width - tensor.shape[1]), fill)], dim=1)


def _recomputed_positions(
    region: torch.Tensor,
    earlier_masks: torch.Tensor,
    block_start: torch.Tensor,
    block_end: torch.Tensor,
    block_width: int,
    earlier_width: int,
) -> torch.Tensor:
    """What a cached step must recompute, per row: its block, led by the masks of earlier blocks still open.

    Every row gets `block_width` block positions (a shorter last block repeats its last one) and
    `earlier_width` leading ones, the most any row has (rows with fewer repeat their block's first
    position). Repeats are the same query with the same result; the first column is each row's
    earliest position (where the prefix cache starts).
    """
    span = torch.arange(block_width, device=region.device)
    block = region.gather(1, torch.minimum(block_start[:, None] + span, block_end[:, None] - 1))
    if earlier_width == 0:
        return block
    first_open = (~earlier_masks).to(torch.int8).argsort(dim=1, stable=True)[:, :earlier_width]
    padding = torch.arange(earlier_width, device=region.device) >= earlier_masks.sum(dim=1, keepdim=True)
    leftover = torch.where(padding, block[:, :1], region.gather(1, first_open))
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


def _logits_at(parts: MaskedLMParts, hidden: torch.Tensor, due: DuePositions, guided: bool) -> torch.Tensor:
    """The logits at the due positions; with guidance the conditional rows, then the unconditional ones."""
    row_index, position = due.rows, due.columns
    rows = due.canvas.shape[0]
    sources = [row_index, row_index + rows] if guided else [row_index]
    if parts.split and hidden.shape[0] * hidden.shape[1] >= MIN_GEMM_ROWS:
        return parts.logits(torch.cat([hidden[source, position] for source in sources]))
    # a tiny canvas: the full pass is as cheap, and rounds exactly like the reference
    grid = parts.logits(hidden, pad=False)
    pieces = [grid[source, position] for source in sources]
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces)
