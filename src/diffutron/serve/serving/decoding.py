"""The work item of chat and text completions: rows of prompts decoded together by one `Decoder`.

Requests whose settings can share one canvas (the same `GenerationConfig` apart from the seed,
and the same number of log-probability alternatives, or none; a suffix may differ) are decoded
together as one batch of prompts of different lengths; each row draws from its own random
stream, seeded by its request (`sampling/streams.py`), so a seeded answer does not depend on
its batch.

Continuous batching: every row of the sampler's `Decoder` follows its own block schedule, so a
row whose answer is decided is answered and leaves at once, one whose client went away or timed
out leaves at the next call, and waiting requests of the same settings join at the next model
call (stochastic transfer, whose rows go from block to block together, is the exception).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from diffutron.model.chat import ANSWER_END
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.frames import DenoisingFrame, FrameBuilder
from diffutron.sampling.interrupt import Interrupted
from diffutron.sampling.logprobs import RowLogprobs, TokenLogprob, scored_positions, tokens_within
from diffutron.sampling.sampler import Decoder, StepEvent, build_canvas
from diffutron.sampling.streamer import AnswerStreamer
from diffutron.serve.scheduler import Done, Event, Scheduler, WorkItem


@dataclass(frozen=True)
class Row:
    """One answer to produce: `n` copies of a prompt are `n` rows."""

    prompt: list[int]
    seed: int
    choice: int  # its index among the response's choices


Scored = tuple[TokenLogprob, ...]  # answer tokens with their log-probabilities


@dataclass(frozen=True)
class Delta(Event):
    choice: int
    text: str
    logprobs: Scored | None = None  # the tokens of `text` (and any before it not handed out yet)


@dataclass(frozen=True)
class Frame(Event):
    """The canvas of one answer after one model call (stream_options.include_denoising)."""

    choice: int
    denoising: DenoisingFrame


@dataclass(frozen=True)
class Finished(Event):
    choice: int
    text: str
    finish_reason: str
    tokens: int
    logprobs: Scored | None = None  # every answer token, when asked for


@dataclass(eq=False, kw_only=True)
class GenerationWork(WorkItem):
    """Rows to answer with one sampler config; items of equal configs (and equal `logprobs`) share a `Decoder`."""

    rows: list[Row]
    config: GenerationConfig  # without seed: the rows carry theirs
    stops: tuple[str, ...] = ()
    stream: bool = False
    denoising: bool = False
    logprobs: int | None = None  # alternatives per answer token; None: no log-probabilities
    suffix: tuple[int, ...] = ()  # token ids after the answer's masks (fill in the middle)

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def batch_key(self) -> Hashable:
        return (GenerationWork, self.config, self.logprobs)

    @classmethod
    def run(cls, batch: Sequence[WorkItem], worker: Scheduler) -> None:
        items = [item for item in batch if isinstance(item, GenerationWork)]
        _Batch(worker, items[0].config, items[0].logprobs).run(items)


@dataclass(eq=False)
class _Scores:
    """One row's log-probabilities: recorded at each call, handed out with the text they belong to."""

    recorded: RowLogprobs
    handed_out: int = 0  # answer tokens handed out so far

    def streamed(self, tracker: AnswerStreamer, canvas_row: list[int], decode: Decode) -> Scored:
        """The tokens wholly inside the text streamed so far that were not handed out yet."""
        tokens = tracker.stops.decided(tracker.region(canvas_row))
        tokens = tokens[: tracker.stops.stop_token(tokens)]
        within = tokens_within(tokens, len(tracker.sent), decode)
        return self._hand_out(range(tracker.start, tracker.start + within), canvas_row, decode)

    def settle(self, tracker: AnswerStreamer, canvas_row: list[int], decode: Decode) -> tuple[Scored, Scored]:
        """The answer is settled: its tokens not handed out yet, and all of them."""
        end = tracker.start + tracker.length
        positions = scored_positions(decode.tokenizer, tracker.stops, canvas_row, tracker.start, end)
        return self._hand_out(positions, canvas_row, decode), self.recorded.tokens(positions, canvas_row, decode.token)

    def _hand_out(self, positions: range, canvas_row: list[int], decode: Decode) -> Scored:
        start = positions.start + self.handed_out
        if start >= positions.stop:
            return ()
        self.handed_out = positions.stop - positions.start
        return self.recorded.tokens(range(start, positions.stop), canvas_row, decode.token)


@dataclass(frozen=True)
class Decode:
    """A tokenizer's texts: of token lists (trimmed, as answers are) and of one token."""

    tokenizer: PreTrainedTokenizerBase

    def __call__(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    def token(self, token: int) -> str:
        return self.tokenizer.decode([token])


@dataclass(eq=False)
class _Entry:
    """One row of the running batch: an answer of an item, from the call at which it joined."""

    item: GenerationWork
    row: Row
    tracker: AnswerStreamer
    joined: int  # the decoder's model calls when the row joined
    gone: bool = False  # dropped: nobody waits for it any more
    scores: _Scores | None = None  # when the item asks for log-probabilities


@dataclass
class _Progress:
    """An item's rows in the running batch."""

    open_rows: int  # rows not answered yet
    peak_rows: int = 0  # most rows decoded together with it


class _Batch:
    """The running batch: items with one shared config, decoded by one `Decoder`, one model call at a time.

    When the decoder is `continuous`, a finished row is answered and taken out at once, and
    waiting items of the same config join at the next call (unless the server was told not to);
    otherwise (stochastic transfer) the rows go from block to block together, finished rows stay
    (idle) and the batch runs until all are done.
    """

    def __init__(self, worker: Scheduler, config: GenerationConfig, logprobs: int | None) -> None:
        self.worker = worker
        self.lm = worker.lm
        self.metrics = worker.metrics
        self.config = config
        self.decoder = Decoder(
            self.lm.model,
            self.lm.tokenizer,
            config,
            masks=config.max_new_tokens,
            stop_texts=(ANSWER_END,) if config.early_stop else None,
            logprobs=logprobs,
        )
        self.decode = Decode(self.lm.tokenizer)
        self.entries: list[_Entry] = []  # in the decoder's row order
        self.frames = FrameBuilder(self.lm.tokenizer)
        self.progress: dict[int, _Progress] = {}  # item number -> its rows here

    def run(self, items: list[GenerationWork]) -> None:
        self.join(items)
        while True:
            if self.decoder.continuous and self.worker.continuous:
                room = self.worker.max_batch_size - self.decoder.rows
                self.join([item for item in self.worker.joiners(items[0], room) if isinstance(item, GenerationWork)])
            try:
                if not self.decoder.step(self.on_step):
                    break
            except Interrupted:  # a long loop before a model call, and nobody waits for any row
                self.abandon()
                return
            if self.decoder.continuous:
                self.settle()
        for index, entry in enumerate(self.entries):
            self.close(index, entry)

    def abandon(self) -> None:
        """Drop every row still decoding: each of their items was given up."""
        for entry in self.entries:
            if not entry.tracker.finished and not entry.gone and (reason := self.worker.drop_reason(entry.item)):
                entry.gone = True
                self.metrics.dropped_rows.labels(reason).inc()

    def join(self, items: list[GenerationWork]) -> None:
        for item in items:
            prompts = [row.prompt for row in item.rows]
            length = self.config.max_new_tokens
            canvas = build_canvas(prompts, length, self.decoder.ids, self.decoder.device, item.suffix)
            stops = self.lm.answer_stops.with_texts(item.stops)  # the decoder's stopper ends a row at them too
            self.decoder.add(canvas, [row.seed for row in item.rows], [stops] * len(item.rows))
            self.entries += [
                _Entry(
                    item,
                    row,
                    AnswerStreamer(self.lm.tokenizer, stops, len(row.prompt), length),
                    self.decoder.calls,
                    scores=None if item.logprobs is None else _Scores(RowLogprobs(len(row.prompt), length)),
                )
                for row in item.rows
            ]
            self.progress[item.number] = _Progress(len(item.rows))

    def on_step(self, event: StepEvent) -> None:
        """After each model call: stream what grew, answer finished rows, drop abandoned ones."""
        self.worker.model_called()
        rows = len(self.entries)
        self.metrics.batch_rows.observe(rows)
        changed = event.committed.any(dim=1).tolist()
        finished = event.finished.tolist() if event.finished is not None else [False] * rows
        canvas: list[list[int]] | None = None
        for index, entry in enumerate(self.entries):
            item, row, tracker = entry.item, entry.row, entry.tracker
            progress = self.progress[item.number]
            progress.peak_rows = max(progress.peak_rows, rows)
            if tracker.finished or entry.gone:
                continue
            if reason := self.worker.drop_reason(item):
                self.metrics.dropped_rows.labels(reason).inc()
                entry.gone = True
                self.decoder.drop([index])
                continue
            if entry.scores is not None and changed[index] and event.logprobs is not None:
                entry.scores.recorded.record(event.logprobs, index)
            # a row is read when it streams, has just ended, or could have met a stop string no stopper watches
            unwatched = bool(item.stops) and self.decoder.state.stopper is None
            if not item.denoising and not (changed[index] and (item.stream or finished[index] or unwatched)):
                continue
            canvas = canvas if canvas is not None else event.canvas.tolist()
            if item.denoising:
                region = range(len(row.prompt), len(row.prompt) + self.config.max_new_tokens)
                frame = self.frames.frame(
                    event, index, row.choice, region=region, call=event.calls - entry.joined, stops=tracker.stops
                )
                item.emit(Frame(row.choice, frame))
            delta = tracker.put(canvas[index])
            if tracker.finished:
                self.finish(entry, delta, canvas[index])
                self.decoder.drop([index])
            elif item.stream and delta:
                scores = None if entry.scores is None else entry.scores.streamed(tracker, canvas[index], self.decode)
                item.emit(Delta(row.choice, delta, scores))

    def settle(self) -> None:
        """Take out the rows that are answered or dropped; answer those whose blocks ran out."""
        done = self.decoder.done()
        leaving = []
        for index, entry in enumerate(self.entries):
            if done[index]:
                self.close(index, entry)
                leaving.append(index)
        if leaving:
            self.decoder.remove(leaving)
            self.entries = [entry for index, entry in enumerate(self.entries) if index not in leaving]
            decoding = {entry.item.number for entry in self.entries}
            self.progress = {number: rows for number, rows in self.progress.items() if number in decoding}

    def close(self, index: int, entry: _Entry) -> None:
        """The decoder is done with row `index`: answer it if its blocks ran out before its answer ended."""
        if not entry.tracker.finished and not entry.gone and self.worker.drop_reason(entry.item) is None:
            canvas_row = self.decoder.canvas[index].tolist()
            self.finish(entry, entry.tracker.end(canvas_row), canvas_row)

    def finish(self, entry: _Entry, delta: str, canvas_row: list[int]) -> None:
        item, row, tracker = entry.item, entry.row, entry.tracker
        rest, scored = (None, None) if entry.scores is None else entry.scores.settle(tracker, canvas_row, self.decode)
        if item.stream and (delta or rest):
            item.emit(Delta(row.choice, delta, rest))
        assert tracker.text is not None and tracker.finish_reason is not None
        tokens = len(self.lm.encode(tracker.text)) if tracker.text else 0
        self.metrics.generated_tokens.inc(tokens)
        item.emit(Finished(row.choice, tracker.text, tracker.finish_reason, tokens, scored))
        progress = self.progress[item.number]
        progress.open_rows -= 1
        if progress.open_rows == 0:
            item.emit(Done(self.decoder.calls - entry.joined, progress.peak_rows))
