"""`POST /v1/chat/completions`: a conversation rendered with the model's chat template, answered
freely, in a JSON format or with a tool call (`structured.py`)."""

from __future__ import annotations

from fastapi import Request, Response

from diffutron.serve.conversation import chat_prompt
from diffutron.serve.errors import APIError
from diffutron.serve.schemas import ChatCompletionRequest
from diffutron.serve.serving.structured import StructuredServing, request_shape


class ChatServing(StructuredServing):
    chat = True

    async def create(self, body: ChatCompletionRequest, request: Request) -> Response:
        self.check_model(body.model)
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        settings = self.settings(body, max_tokens)
        shape = request_shape(body)
        prompt = chat_prompt(body.messages, self.options.user_tags, shape.note())
        ids = self.prompt_ids(prompt, settings, "messages", room=shape.free or shape.auto)
        return await self.shaped_answer(body, [ids], settings, shape, request, logprobs=top_logprobs(body))


def top_logprobs(body: ChatCompletionRequest) -> int | None:
    """Alternatives per answer token; None without `logprobs` (`top_logprobs` needs it, as at OpenAI)."""
    if body.logprobs:
        return body.top_logprobs or 0
    if body.top_logprobs:
        raise APIError(
            400, "top_logprobs needs logprobs: set logprobs to true", param="top_logprobs", code="invalid_value"
        )
    return None
