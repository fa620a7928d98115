"""The OpenAI shapes of answers: whole responses and streamed chunks, for chat and text completions."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from diffutron.serve.scheduler import Finished, Frame

Json = dict[str, Any]


class Format:
    """Responses and chunks of one request; `chat` picks chat.completion, else text_completion."""

    def __init__(self, chat: bool, model: str) -> None:
        self.chat = chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def response(self, finished: list[Finished], usage: Json, extension: Json) -> Json:
        choices = [self._choice(item) for item in sorted(finished, key=lambda item: item.choice)]
        return {
            **self._head("chat.completion" if self.chat else "text_completion"),
            "choices": choices,
            "usage": usage,
            "diffutron": extension,
        }

    def start(self, choices: int) -> list[Json]:
        """Chat streams open each choice with the assistant role, as OpenAI's do."""
        if not self.chat:
            return []
        return [
            self._chunk(
                [
                    {
                        "index": index,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                        "logprobs": None,
                    }
                ]
            )
            for index in range(choices)
        ]

    def delta(self, choice: int, text: str) -> Json:
        return self._chunk([self._piece(choice, text, None)])

    def finish(self, item: Finished) -> Json:
        return self._chunk([self._piece(item.choice, "", item.finish_reason)])

    def frame(self, frame: Frame) -> Json:
        """An extension chunk: no text, the canvas of one answer after one model call."""
        return {**self._chunk([self._piece(frame.choice, "", None)]), "denoising": frame.denoising}

    def usage(self, usage: Json, extension: Json) -> Json:
        return {**self._chunk([]), "usage": usage, "diffutron": extension}

    def _head(self, kind: str) -> Json:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def _chunk(self, choices: list[Json]) -> Json:
        return {**self._head("chat.completion.chunk" if self.chat else "text_completion"), "choices": choices}

    def _piece(self, choice: int, text: str, finish_reason: str | None) -> Json:
        if self.chat:
            return {
                "index": choice,
                "delta": {"content": text} if text else {},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        return {"index": choice, "text": text, "finish_reason": finish_reason, "logprobs": None}

    def _choice(self, item: Finished) -> Json:
        if self.chat:
            return {
                "index": item.choice,
                "message": {"role": "assistant", "content": item.text},
                "finish_reason": item.finish_reason,
                "logprobs": None,
            }
        return {"index": item.choice, "text": item.text, "finish_reason": item.finish_reason, "logprobs": None}


def usage(prompt_tokens: int, finished: list[Finished]) -> Json:
    completion = sum(item.tokens for item in finished)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def server_sent_event(data: Json | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"
