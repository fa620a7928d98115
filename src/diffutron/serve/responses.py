"""The OpenAI shapes of answers as pydantic models: whole responses, streamed chunks, model lists, errors.

The routes declare them as their `response_model`, so the OpenAPI schema describes every body
the server sends; `Format` builds those of one chat or text completion.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from diffutron.serve.serving.decoding import Finished, Frame

Json = dict[str, Any]
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


class ChatChoice(_Body):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class CompletionChoice(_Body):
    index: int
    text: str
    finish_reason: str | None
    logprobs: None = None


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
    logprobs: None = None


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


class Format:
    """Responses and chunks of one request; `chat` picks chat.completion, else text_completion."""

    def __init__(self, chat: bool, model: str) -> None:
        self.chat = chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def response(self, finished: list[Finished], usage: Usage, extension: Extension) -> ChatCompletion | Completion:
        items = sorted(finished, key=lambda item: item.choice)
        head = {"id": self.id, "created": self.created, "model": self.model, "usage": usage, "diffutron": extension}
        if self.chat:
            choices = [
                ChatChoice(index=item.choice, message=self._message(item), finish_reason=item.finish_reason)
                for item in items
            ]
            return ChatCompletion(**head, choices=choices)
        return Completion(**head, choices=[self._text(item.choice, item.text, item.finish_reason) for item in items])

    def start(self, choices: int) -> list[ChatCompletionChunk]:
        """Chat streams open each choice with the assistant role, as OpenAI's do."""
        if not self.chat:
            return []
        opening = [
            ChatChunkChoice(index=index, delta=ChatDelta(role="assistant", content=""), finish_reason=None)
            for index in range(choices)
        ]
        return [ChatCompletionChunk(**self._head(), choices=[choice]) for choice in opening]

    def delta(self, choice: int, text: str) -> ChatCompletionChunk | CompletionChunk:
        return self._chunk(choice, text, None)

    def finish(self, item: Finished) -> ChatCompletionChunk | CompletionChunk:
        return self._chunk(item.choice, "", item.finish_reason)

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
        return self._chunk(frame.choice, "", None, denoising=dict(frame.denoising))

    def usage(self, usage: Usage, extension: Extension) -> ChatCompletionChunk | CompletionChunk:
        kind = ChatCompletionChunk if self.chat else CompletionChunk
        return kind(**self._head(), choices=[], usage=usage, diffutron=extension)

    def _head(self) -> Json:
        return {"id": self.id, "created": self.created, "model": self.model}

    def _chunk(
        self, choice: int, text: str, finish_reason: str | None, **extra: Any
    ) -> ChatCompletionChunk | CompletionChunk:
        if self.chat:
            delta = ChatDelta(content=text) if text else ChatDelta()
            piece = ChatChunkChoice(index=choice, delta=delta, finish_reason=finish_reason)
            return ChatCompletionChunk(**self._head(), choices=[piece], **extra)
        return CompletionChunk(**self._head(), choices=[self._text(choice, text, finish_reason)], **extra)

    @staticmethod
    def _text(choice: int, text: str, finish_reason: str | None) -> CompletionChoice:
        return CompletionChoice(index=choice, text=text, finish_reason=finish_reason)


def usage(prompt_tokens: int, finished: list[Finished]) -> Usage:
    completion = sum(item.tokens for item in finished)
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion)


def server_sent_event(data: _Body | Json | str) -> str:
    if isinstance(data, _Body):
        data = data.to_json()
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"
