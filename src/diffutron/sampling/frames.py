"""Denoising frames: the state of an answer after each model call, as JSON-ready dicts.

The server streams one per call (`stream_options.include_denoising`), the web page draws them
live and `diffutron.viz.animation` turns them into a GIF or SVG. A frame gives, per answer
position, its token text or None while it is still masked, the positions that show the answer
(cut where it ends, by `AnswerStops`), the positions committed at this call and their
confidence (the model's probability of the committed token).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TypedDict

import torch
from transformers import PreTrainedTokenizerBase

from diffutron.errors import DiffutronError
from diffutron.model.tokens import SpecialIds
from diffutron.sampling.sampler import StepEvent
from diffutron.sampling.stopping import REPLACEMENT_CHARACTER, AnswerStops, decided_texts


class DenoisingFrame(TypedDict):
    index: int  # the choice (row) this frame belongs to
    call: int  # model calls so far, from 1
    block: int  # the block decoded at this call, from 0
    tokens: list[str | None]  # per answer position: its text, None while masked
    visible: list[str | None]  # the positions that show the answer: `tokens` cut where the answer ends
    committed: list[int]  # answer positions committed at this call
    confidence: list[float]  # per committed position, the model's probability of its token


class FrameBuilder:
    """Turns the sampler's StepEvents into frames of each row's answer region.

    `regions[row]` lists the canvas positions of that row's answer in order; left out, they are
    the positions that were masked before the first call (the whole generated part of a
    generation canvas, every gap of an infill canvas).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, regions: Sequence[Sequence[int]] | None = None) -> None:
        self.mask_id = SpecialIds.from_tokenizer(tokenizer).mask
        self.stops = AnswerStops.for_tokenizer(tokenizer)
        self.regions = None if regions is None else [list(region) for region in regions]
        self._decode = functools.lru_cache(maxsize=8192)(
            lambda ids: tokenizer.decode(list(ids), skip_special_tokens=True)
        )

    @classmethod
    def for_prompts(
        cls, tokenizer: PreTrainedTokenizerBase, prompt_lengths: Sequence[int], new_tokens: int
    ) -> FrameBuilder:
        """For a generation canvas (`sampler.build_canvas`): each answer follows its prompt."""
        return cls(tokenizer, [range(length, length + new_tokens) for length in prompt_lengths])

    def frames(self, event: StepEvent) -> list[DenoisingFrame]:
        """One frame per row, its `index` the row number."""
        return [self.frame(event, row) for row in range(event.canvas.shape[0])]

    def frame(
        self,
        event: StepEvent,
        row: int,
        index: int | None = None,
        *,
        region: Sequence[int] | None = None,
        call: int | None = None,
        stops: AnswerStops | None = None,
    ) -> DenoisingFrame:
        """The frame of one row; `index` (default: the row) names its choice in a response.

        A row that joined a running decoder gives its answer's `region` and its own `call` count;
        a request with stop strings gives its `stops` (default: the chat format's end and the stop tokens).
        """
        if region is None and self.regions is None:
            before = (event.canvas == self.mask_id) | event.committed
            self.regions = [positions.nonzero().flatten().tolist() for positions in before]
        positions = self.regions[row] if region is None else list(region)
        columns = torch.tensor(positions, dtype=torch.long, device=event.canvas.device)
        ids = event.canvas[row, columns].tolist()
        committed = event.committed[row, columns].nonzero().flatten().tolist()
        if event.confidence is None:
            raise DiffutronError("this step event carries no confidence: frames need the sampler's own events")
        confidence = [round(value, 4) for value in event.confidence[row, columns[committed]].tolist()]
        tokens = self.token_texts(ids)
        return DenoisingFrame(
            index=row if index is None else index,
            call=event.calls if call is None else call,
            block=event.blocks[row],
            tokens=tokens,
            visible=(stops or self.stops).visible(tokens, ids),
            committed=committed,
            confidence=confidence,
        )

    def token_texts(self, ids: Sequence[int]) -> list[str | None]:
        """Per position its text (None for a mask); each run of decided tokens joins to its decoded text."""
        texts: list[str | None] = []
        run: list[int] = []
        for token in [*ids, self.mask_id]:
            if token != self.mask_id:
                run.append(token)
                continue
            texts.extend(self._run_pieces(tuple(run)))
            run = []
            texts.append(None)
        return texts[:-1]

    def _run_pieces(self, run: tuple[int, ...]) -> list[str]:
        """Split the decoded text of consecutive tokens among them.

        A token holding only some bytes of a character (byte fallback) gets "" and the token
        that completes the character gets all of it, so the pieces never show broken characters
        except at the end of a run, where the next byte is still masked.
        """
        pieces: list[str] = []
        emitted = ""
        for end in range(1, len(run) + 1):
            text = self._decode(run[:end])
            if end < len(run) and (text.endswith(REPLACEMENT_CHARACTER) or not text.startswith(emitted)):
                pieces.append("")
                continue
            pieces.append(text.removeprefix(emitted))
            emitted = text
        return pieces


class FrameRecorder:
    """A step callback that keeps the frames of one row (the first by default) of one generation."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, row: int = 0) -> None:
        self.builder = FrameBuilder(tokenizer)
        self.row = row
        self.frames: list[DenoisingFrame] = []

    def __call__(self, event: StepEvent) -> None:
        self.frames.append(self.builder.frame(event, self.row))


def visible_positions(frame: DenoisingFrame) -> list[str | None]:
    """The positions of a frame that show the answer: its `visible`, or for a frame without one (made
    by hand or by an older version) what its token texts show."""
    return frame["visible"] if "visible" in frame else visible_tokens(frame["tokens"])


def visible_tokens(tokens: Sequence[str | None], stops: AnswerStops | None = None) -> list[str | None]:
    """The positions of a frame's `tokens` that show the answer, read from their texts alone.

    A frame built here carries them as `visible`, where a stop token ends the answer too; this is
    for token texts without their ids (`AnswerStops.visible`).
    """
    return (stops or AnswerStops()).visible(tokens)


def frame_text(tokens: Sequence[str | None], stops: AnswerStops | None = None) -> str:
    """The answer a frame shows: the decided text before the first mask, cut at `[/Answer]` and trimmed.

    For the last frame of a generation this is the answer `Diffutron.chat` returns (special
    tokens read as empty text, so an answer the model ends with an end-of-sequence token and
    no tag is cut there only if nothing but masks or special tokens follows it; a frame's
    `visible` positions are cut at that token).
    """
    return (stops or AnswerStops()).cut("".join(decided_texts(tokens)))[0].strip()
