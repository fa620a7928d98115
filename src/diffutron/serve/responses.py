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


class AssistantMessage(_Body):
    role: Literal["assistant"] = "assistant"
    content: str


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
                ChatChoice(
                    index=item.choice, message=AssistantMessage(content=item.text), finish_reason=item.finish_reason
                )
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
