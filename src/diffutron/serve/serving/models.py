"""`GET /v1/models`: the served model and its LoRA adapters, as OpenAI lists models."""

from __future__ import annotations

from diffutron.serve.responses import ModelCard, ModelList
from diffutron.serve.serving.base import Serving


class ModelServing(Serving):
    def card(self, adapter: str | None) -> ModelCard:
        """The base model's card, or an adapter's (its `parent` is the base model)."""
        if adapter is None:
            return ModelCard(id=self.options.model_id, created=self.context.created)
        return ModelCard(id=adapter, created=self.context.created, parent=self.options.model_id)

    def list(self) -> ModelList:
        return ModelList(data=[self.card(name) for name in (None, *self.lm.adapters.names)])

    def get(self, model: str) -> ModelCard:
        return self.card(self.check_model(model))
