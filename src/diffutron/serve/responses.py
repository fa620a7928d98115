"""The OpenAI shapes of answers as pydantic models: whole responses, streamed chunks, model lists, errors.

The routes declare them as their `response_model`, so the OpenAPI schema describes every body
the server sends; `Format` builds those of one chat or text completion.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from diffutron.sampling.logprobs import Alternative
from diffutron.serve.serving.decoding import Delta, Finished, Frame, Scored

Json = dict[str, Any]
IMPOSSIBLE = -9999.0  # a log-probability JSON cannot carry (minus infinity), as OpenAI writes it
TOOL_CALLS = "tool_calls"  # the finish_reason of an answer that is a tool call


class _Body(BaseModel):
    """A response body."""

    def to_json(self) -> Json:
        return self.model_dump()


def _absent(value: object) -> bool:
    return value is None


Omitted = Field(default=None, exclude_if=_absent)  # a field left out of the body while it is None


class ModelCard(_Body):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "diffutron"
    parent: str | None = Omitted  # a LoRA adapter's base model (vLLM's field)


class ModelList(_Body):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Usage(_Body):
    prompt_tokens: int
    completion_tokens: int  # tokens of the answer texts
    total_tokens: int


class Extension(_Body):
    """Diffutron's record of how an answer was made (the `diffutron` field)."""

    seed: int
    speed: str
    settings: Json  # every sampler setting applied
    model_calls: int  # forward passes made while this request was decoded, from the one it joined at
    batch_rows: int  # the most answers decoded together in one pass while it was


class FunctionCall(_Body):
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCall(_Body):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ToolCallDelta(ToolCall):
    index: int  # the call's place in the message (always 0: an answer holds one call)


class AssistantMessage(_Body):
    role: Literal["assistant"] = "assistant"
    content: str | None  # None for a tool call
    tool_calls: list[ToolCall] | None = Omitted


class TopLogprob(_Body):
    """A token of the distribution an answer token was drawn from (chat `logprobs`)."""

    token: str
    logprob: float
    bytes: list[int]  # the token text's UTF-8 bytes


class ChatTokenLogprob(TopLogprob):
    """An answer token: its log-probability at the call that committed it, and the likeliest alternatives."""

    top_logprobs: list[TopLogprob]


class ChatLogprobs(_Body):
    content: list[ChatTokenLogprob]


class CompletionLogprobs(_Body):
    """OpenAI's legacy shape: one entry per token in each list; echoed prompt tokens have no log-probability."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]  # where each token's text starts in the choice's text


class ChatChoice(_Body):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: ChatLogprobs | None = None


class CompletionChoice(_Body):
    index: int
    text: str
    finish_reason: str | None
    logprobs: CompletionLogprobs | None = None


class _Answer(_Body):
    """A whole answer; its subclasses give `object` and `choices` their types."""

    id: str
    object: str
    created: int
    model: str
    choices: list[Any]
    usage: Usage
    diffutron: Extension


class ChatCompletion(_Answer):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]


class Completion(_Answer):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class ChatDelta(_Body):
    role: Literal["assistant"] | None = Omitted
    content: str | None = Omitted
    tool_calls: list[ToolCallDelta] | None = Omitted


class ChatChunkChoice(_Body):
    index: int
    delta: ChatDelta
    finish_reason: str | None
    logprobs: ChatLogprobs | None = None


class _Chunk(_Body):
    id: str
    object: str
    created: int
    model: str
    choices: list[Any]
    usage: Usage | None = Omitted  # the usage chunk (stream_options.include_usage)
    diffutron: Extension | None = Omitted  # in the usage chunk
    denoising: Json | None = Omitted  # extension: one answer's canvas after a model call


class ChatCompletionChunk(_Chunk):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]


class CompletionChunk(_Chunk):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class InfillResponse(_Body):
    id: str
    object: Literal["infill"] = "infill"
    created: int
    model: str
    text: str
    diffutron: Extension


class Embedding(_Body):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # floats, or base64 of little-endian float32s


class EmbeddingUsage(_Body):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(_Body):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class TokenizeResponse(_Body):
    """vLLM's `/tokenize` answer."""

    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = Omitted


class DetokenizeResponse(_Body):
    """vLLM's `/detokenize` answer."""

    prompt: str


class Health(_Body):
    status: Literal["ok"] = "ok"
    model: str


class ErrorDetail(_Body):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(_Body):
    """Every failure's body, as OpenAI's API sends it."""

    error: ErrorDetail


@dataclass(frozen=True)
class Echo:
    """A prompt sent back before its answer (completions' `echo`): its text and its tokens' texts."""

    text: str
    tokens: tuple[str, ...]


@dataclass
class _Offsets:
    """Where each token's text starts in one choice's text as sent so far."""

    text: str = ""
    cursor: int = 0  # where the last placed token ended

    def place(self, added: str, pieces: Sequence[str]) -> list[int]:
        self.text += added
        offsets = []
        for piece in pieces:
            start, length = self._find(piece)
            offsets.append(start)
            self.cursor = start + length
        return offsets

    def _find(self, piece: str) -> tuple[int, int]:
        """The next place of a token's text, or of its text trimmed (the answer's first space is trimmed)."""
        for candidate in (piece, piece.strip()):
            if candidate and (found := self.text.find(candidate, self.cursor)) >= 0:
                return found, len(candidate)
        return self.cursor, 0


@dataclass
class Format:
    """Responses and chunks of one request; `chat` picks chat.completion, else text_completion.

    `logprobs`: the answer tokens' log-probabilities go with the text; `echoes`: per choice, the
    prompt sent back before its answer (completions).
    """

    chat: bool
    model: str
    logprobs: bool = False
    echoes: dict[int, Echo] = field(default_factory=dict)
    id: str = field(init=False)
    created: int = field(init=False)
    _offsets: dict[int, _Offsets] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.id = f"{'chatcmpl' if self.chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def response(self, finished: list[Finished], usage: Usage, extension: Extension) -> ChatCompletion | Completion:
        items = sorted(finished, key=lambda item: item.choice)
        head = {"id": self.id, "created": self.created, "model": self.model, "usage": usage, "diffutron": extension}
        if self.chat:
            choices = [
                ChatChoice(
                    index=item.choice,
                    message=self._message(item),
                    finish_reason=item.finish_reason,
                    logprobs=self._chat_logprobs(self._scored(item.logprobs)),
                )
                for item in items
            ]
            return ChatCompletion(**head, choices=choices)
        texts = [self._echoed(item.choice, item.text, item.logprobs) for item in items]
        choices = [
            CompletionChoice(index=item.choice, text=text, finish_reason=item.finish_reason, logprobs=logprobs)
            for item, (text, logprobs) in zip(items, texts, strict=True)
        ]
        return Completion(**head, choices=choices)

    def start(self, choices: int) -> list[ChatCompletionChunk | CompletionChunk]:
        """Chat streams open each choice with the assistant role, as OpenAI's do; text streams with the
        echoed prompt, if asked for."""
        if not self.chat:
            return [self._chunk(choice, *self._echoed(choice, "", None), None) for choice in sorted(self.echoes)]
        opening = [
            ChatChunkChoice(index=index, delta=ChatDelta(role="assistant", content=""), finish_reason=None)
            for index in range(choices)
        ]
        return [ChatCompletionChunk(**self._head(), choices=[choice]) for choice in opening]

    def delta(self, event: Delta) -> ChatCompletionChunk | CompletionChunk:
        """A piece of an answer's text, with the tokens handed out with it when log-probabilities are asked for."""
        scored = self._scored(event.logprobs)
        if self.chat:
            return self._chunk(event.choice, event.text, self._chat_logprobs(scored), None)
        logprobs = None if scored is None else self._completion_logprobs(event.choice, event.text, (), scored)
        return self._chunk(event.choice, event.text, logprobs, None)

    def finish(self, item: Finished) -> ChatCompletionChunk | CompletionChunk:
        return self._chunk(item.choice, "", None, item.finish_reason)

    def tool_calls(self, item: Finished) -> ChatCompletionChunk:
        """The chunk of a streamed tool call: the whole call at once (it is sent when it is complete)."""
        call = ToolCallDelta(index=0, **self._call(item).model_dump())
        piece = ChatChunkChoice(index=item.choice, delta=ChatDelta(tool_calls=[call]), finish_reason=None)
        return ChatCompletionChunk(**self._head(), choices=[piece])

    def _message(self, item: Finished) -> AssistantMessage:
        if item.finish_reason == TOOL_CALLS:
            return AssistantMessage(content=None, tool_calls=[self._call(item)])
        return AssistantMessage(content=item.text)

    def _call(self, item: Finished) -> ToolCall:
        """The call written as `{"name": ..., "arguments": {...}}` in OpenAI's shape; its id is the
        response's with the choice's index."""
        call = json.loads(item.text)
        arguments = json.dumps(call["arguments"], ensure_ascii=False)
        return ToolCall(
            id=f"call_{self.id.split('-', 1)[1]}_{item.choice}",
            function=FunctionCall(name=call["name"], arguments=arguments),
        )

    def frame(self, frame: Frame) -> ChatCompletionChunk | CompletionChunk:
        """An extension chunk: no text, the canvas of one answer after one model call."""
        return self._chunk(frame.choice, "", None, None, denoising=dict(frame.denoising))

    def usage(self, usage: Usage, extension: Extension) -> ChatCompletionChunk | CompletionChunk:
        kind = ChatCompletionChunk if self.chat else CompletionChunk
        return kind(**self._head(), choices=[], usage=usage, diffutron=extension)

    def _scored(self, scored: Scored | None) -> Scored | None:
        """An event's tokens when log-probabilities are asked for (none yet: an empty list), else None."""
        return (scored or ()) if self.logprobs else None

    def _head(self) -> Json:
        return {"id": self.id, "created": self.created, "model": self.model}

    def _chunk(
        self, choice: int, text: str, logprobs: Any, finish_reason: str | None, **extra: Any
    ) -> ChatCompletionChunk | CompletionChunk:
        if self.chat:
            delta = ChatDelta(content=text) if text else ChatDelta()
            piece = ChatChunkChoice(index=choice, delta=delta, finish_reason=finish_reason, logprobs=logprobs)
            return ChatCompletionChunk(**self._head(), choices=[piece], **extra)
        piece = CompletionChoice(index=choice, text=text, finish_reason=finish_reason, logprobs=logprobs)
        return CompletionChunk(**self._head(), choices=[piece], **extra)

    def _echoed(self, choice: int, text: str, scored: Scored | None) -> tuple[str, CompletionLogprobs | None]:
        """A choice's text with its echoed prompt before it, and their log-probabilities when asked for."""
        echo = self.echoes.get(choice, Echo("", ()))
        if not self.logprobs:
            return echo.text + text, None
        return echo.text + text, self._completion_logprobs(
            choice, echo.text + text, echo.tokens, self._scored(scored) or ()
        )

    def _completion_logprobs(
        self, choice: int, text: str, prompt_tokens: Sequence[str], scored: Scored
    ) -> CompletionLogprobs:
        """Legacy logprobs of the tokens behind `text` (added to the choice's text): the prompt's, then the answer's."""
        offsets = self._offsets.setdefault(choice, _Offsets())
        pieces = [*prompt_tokens, *(token.text for token in scored)]
        return CompletionLogprobs(
            tokens=pieces,
            token_logprobs=[None] * len(prompt_tokens) + [_finite(token.logprob) for token in scored],
            top_logprobs=[None] * len(prompt_tokens) + [_top_dict(token.top) for token in scored],
            text_offset=offsets.place(text, pieces),
        )

    @staticmethod
    def _chat_logprobs(scored: Scored | None) -> ChatLogprobs | None:
        if scored is None:
            return None
        return ChatLogprobs(
            content=[
                ChatTokenLogprob(
                    **_top(token).model_dump(), top_logprobs=[_top(alternative) for alternative in token.top]
                )
                for token in scored
            ]
        )


def _finite(logprob: float) -> float:
    return logprob if math.isfinite(logprob) else IMPOSSIBLE


def _top(token: Alternative) -> TopLogprob:
    return TopLogprob(token=token.text, logprob=_finite(token.logprob), bytes=list(token.text.encode("utf-8")))


def _top_dict(alternatives: Sequence[Alternative]) -> dict[str, float]:
    """The alternatives by text (tokens of the same text keep the likeliest's log-probability)."""
    top: dict[str, float] = {}
    for alternative in alternatives:
        top.setdefault(alternative.text, _finite(alternative.logprob))
    return top


def usage(prompt_tokens: int, finished: list[Finished]) -> Usage:
    completion = sum(item.tokens for item in finished)
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion)


def server_sent_event(data: _Body | Json | str) -> str:
    if isinstance(data, _Body):
        data = data.to_json()
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"
