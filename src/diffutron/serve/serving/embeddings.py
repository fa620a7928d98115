"""`POST /v1/embeddings`: the encoder's last hidden states, mean-pooled over each input's tokens and
L2-normalised (`Diffutron.embed`); the model's own states, not those of a trained retrieval model.

The inputs of requests waiting together (with the same adapter) are embedded in one batch: the
encoder sorts them by length, so a request's vectors do not depend on its companions.
"""

from __future__ import annotations

import base64
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from fastapi import Request, Response
from fastapi.responses import JSONResponse

from diffutron.errors import ContextLengthError, DiffutronError
from diffutron.model.embeddings import embed_ids
from diffutron.serve.errors import APIError
from diffutron.serve.limits import check_input_tokens, check_prompt_length
from diffutron.serve.responses import Embedding, EmbeddingList, EmbeddingUsage
from diffutron.serve.scheduler import Done, Dropped, Event, Scheduler, WorkItem
from diffutron.serve.schemas import EmbeddingRequest
from diffutron.serve.serving.base import CLIENT_LEFT, ClientGone, Serving


@dataclass(frozen=True, eq=False)
class Embedded(Event):
    vectors: torch.Tensor  # (inputs, hidden) float32 unit vectors


@dataclass(eq=False, kw_only=True)
class EmbeddingWork(WorkItem):
    """The token ids of one request's inputs."""

    inputs: list[list[int]]

    @property
    def size(self) -> int:
        return len(self.inputs)

    @property
    def batch_key(self) -> Hashable:
        return EmbeddingWork

    @classmethod
    def run(cls, batch: Sequence[WorkItem], worker: Scheduler) -> None:
        items = [item for item in batch if isinstance(item, EmbeddingWork)]
        ids = [inputs for item in items for inputs in item.inputs]
        calls = 0

        def after_pass() -> None:
            nonlocal calls
            calls += 1
            worker.model_called()

        vectors = embed_ids(worker.lm.model, ids, worker.lm.special.pad, after_pass=after_pass)
        start = 0
        for item in items:
            end = start + item.size
            if reason := worker.drop_reason(item):
                worker.metrics.dropped_rows.labels(reason).inc(item.size)
                item.emit(Dropped(reason))
            else:
                item.emit(Embedded(vectors[start:end]))
                item.emit(Done(calls, len(ids)))
            start = end


class EmbeddingServing(Serving):
    async def create(self, body: EmbeddingRequest, request: Request) -> Response:
        adapter = self.check_model(body.model)
        hidden = int(self.lm.model.config.hidden_size)
        if body.dimensions is not None and body.dimensions != hidden:
            raise APIError(
                400,
                f"this model's embeddings have {hidden} dimensions, not {body.dimensions}: leave dimensions out",
                param="dimensions",
                code="invalid_value",
            )
        inputs = self.input_ids(body.input)
        check_input_tokens(sum(len(ids) for ids in inputs), self.options.max_request_tokens)
        work = EmbeddingWork(inputs=inputs, deadline=self.deadline(), loop=self.loop(), adapter=adapter)
        try:
            events, _ = await self.collect(work, request)
        except ClientGone:
            return Response(status_code=CLIENT_LEFT)
        vectors = torch.cat([event.vectors for event in events if isinstance(event, Embedded)])
        data = [
            Embedding(index=index, embedding=encoded(vector, body.encoding_format))
            for index, vector in enumerate(vectors)
        ]
        tokens = sum(len(ids) for ids in inputs)
        usage = EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
        return JSONResponse(EmbeddingList(data=data, model=body.model, usage=usage).to_json())

    def input_ids(self, given: str | list[str] | list[int] | list[list[int]]) -> list[list[int]]:
        """The token ids of the request's inputs, or a 400 naming what is wrong with them."""
        if not given:
            raise APIError(
                400, "input is empty: give a text, a list of texts or token ids", param="input", code="invalid_value"
            )
        texts = [given] if isinstance(given, str) else [item for item in given if isinstance(item, str)]
        for index, text in enumerate(texts):
            check_prompt_length(text, self.lm.context_length, "input" if isinstance(given, str) else f"input.{index}")
        try:
            return self.lm.embedding_ids(given)
        except DiffutronError as error:
            code = "context_length_exceeded" if isinstance(error, ContextLengthError) else "invalid_value"
            raise APIError(400, str(error), param="input", code=code) from error


def encoded(vector: torch.Tensor, encoding_format: str) -> list[float] | str:
    """A vector as floats, or as OpenAI's base64: the bytes of its little-endian float32s."""
    if encoding_format == "base64":
        return base64.b64encode(vector.numpy().astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()
