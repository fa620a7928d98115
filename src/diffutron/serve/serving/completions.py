"""`POST /v1/completions`: raw continuation of one prompt or a list of them, free or in a JSON format."""

from __future__ import annotations

from fastapi import Request, Response

from diffutron.serve.errors import APIError
from diffutron.serve.schemas import CompletionRequest
from diffutron.serve.serving.structured import StructuredServing, request_shape


class CompletionServing(StructuredServing):
    chat = False

    async def create(self, body: CompletionRequest, request: Request) -> Response:
        self.check_model(body.model)
        settings = self.settings(body, body.max_tokens)
        shape = request_shape(body)
        texts = body.prompts()
        if not texts:
            raise APIError(400, "prompt is an empty list: give at least one prompt", param="prompt")
        prompts = [
            self.prompt_ids(text, settings, "prompt" if len(texts) == 1 else f"prompt.{index}", room=shape.free)
            for index, text in enumerate(texts)
        ]
        return await self.shaped_answer(body, prompts, settings, shape, request)
