"""`POST /v1/completions`: raw continuation of one prompt or a list of them, free or in a JSON format,
or (`suffix`) the middle between each prompt and a suffix; `echo` sends each prompt back before its answer."""

from __future__ import annotations

from fastapi import Request, Response

from diffutron.serve.errors import APIError
from diffutron.serve.limits import check_prompt_length
from diffutron.serve.responses import Echo
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
        suffix = self.suffix_ids(body.suffix)
        prompts = [
            self.prompt_ids(
                text, settings, "prompt" if len(texts) == 1 else f"prompt.{index}", len(suffix), room=shape.free
            )
            for index, text in enumerate(texts)
        ]
        echoes = self.echoes(texts, prompts, body.n) if body.echo else None
        free = {"logprobs": body.logprobs, "suffix": suffix, "echoes": echoes}
        return await self.shaped_answer(body, prompts, settings, shape, request, **free)

    def suffix_ids(self, suffix: str | None) -> tuple[int, ...]:
        """The suffix's token ids (none for no suffix or an empty one)."""
        if not suffix:
            return ()
        check_prompt_length(suffix, self.lm.context_length, "suffix")
        ids = tuple(self.lm.encode(suffix))
        if self.lm.special.mask in ids:
            raise APIError(
                400,
                "suffix contains the mask token; to fill gaps inside a text use /v1/infill",
                param="suffix",
                code="invalid_value",
            )
        return ids

    def echoes(self, texts: list[str], prompts: list[list[int]], n: int) -> dict[int, Echo]:
        """Per choice (n per prompt, in order), its prompt as sent and its tokens' texts."""
        return {
            index * n + copy: Echo(text, tuple(self.lm.tokenizer.decode([token]) for token in ids))
            for index, (text, ids) in enumerate(zip(texts, prompts, strict=True))
            for copy in range(n)
        }
