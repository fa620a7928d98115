"""`GET /v1/models`: the served model, as OpenAI lists models."""

from __future__ import annotations

from diffutron.serve.responses import ModelCard, ModelList
from diffutron.serve.serving.base import Serving


class ModelServing(Serving):
    def card(self) -> ModelCard:
        return ModelCard(id=self.options.model_id, created=self.context.created)

    def list(self) -> ModelList:
        return ModelList(data=[self.card()])

    def get(self, model: str) -> ModelCard:
        self.check_model(model)
        return self.card()
