"""Structured answers: choices settled by likelihood, then every slot filled by the sampler in one pass."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from diffutron.errors import DiffutronError
from diffutron.eval.likelihood import ContinuationScorer
from diffutron.model.tokens import SpecialIds
from diffutron.sampling.config import WORK_CAP, GenerationConfig
from diffutron.sampling.processors import SlotConstraint
from diffutron.sampling.sampler import StepCallback, denoise
from diffutron.sampling.streams import row_seeds_for
from diffutron.sampling.structured.schema import Node
from diffutron.sampling.structured.skeleton import Plan, Reader, Reading, Skeleton, dumps, plan
from diffutron.sampling.structured.tokens import token_sets

CHOICE_SAMPLES = 8  # masked copies per option in the likelihood (options of up to 3 tokens: exact)


def structured_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Sequence[int]],
    node: Node,
    config: GenerationConfig,
    *,
    row_seeds: Sequence[int | None] | None = None,
    callback: StepCallback | None = None,
) -> list[str]:
    """The JSON text answering each prompt (token ids), laid out by `node`'s skeleton.

    Rows whose skeletons have equally many slots are denoised together (so `callback` sees one
    batch per slot count); a seeded row's answer does not depend on its batch.
    """
    if row_seeds is None:
        row_seeds = row_seeds_for(config.seed, len(prompts))
    skeletons = [Skeleton(tokenizer, prompt) for prompt in prompts]
    readers = settle_choices(model, tokenizer, skeletons, node, config.seed or 0)
    context = int(model.config.max_position_embeddings)
    for index, skeleton in enumerate(skeletons):
        skeleton.flush()
        if len(skeleton.ids) > context:
            raise DiffutronError(
                f"prompt {index} ({skeleton.prompt_length} tokens) and its answer's skeleton "
                f"({len(skeleton.ids) - skeleton.prompt_length} tokens) exceed the model's context of {context} "
                "tokens: shorten the prompt or lower the schema's maxLength / maxItems"
            )
    groups: dict[int, list[int]] = {}
    for index, skeleton in enumerate(skeletons):
        groups.setdefault(sum(token_set >= 0 for token_set in skeleton.sets), []).append(index)
    rows: list[list[int]] = [skeleton.ids for skeleton in skeletons]
    sets = token_sets(tokenizer, int(model.config.vocab_size))
    for slots, members in groups.items():
        if slots:
            filled = _fill(
                [skeletons[i] for i in members],
                sets,
                _slot_config(config, slots),
                [row_seeds[i] for i in members],
                model,
                tokenizer,
                callback,
            )
            for index, row in zip(members, filled, strict=True):
                rows[index] = row
    return [dumps(read(Reading(row, tokenizer))) for row, read in zip(rows, readers, strict=True)]


def settle_choices(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, skeletons: list[Skeleton], node: Node, seed: int
) -> list[Reader]:
    """Lay out every row's skeleton; the choices pending in all rows are scored together, one round per choice.

    An option's score is its MDLM log-likelihood per token after the row's canvas so far (slots
    still masked): per token, so that a longer option is not penalised for its length.
    """
    scorer = ContinuationScorer(model, tokenizer, mc_num=CHOICE_SAMPLES, batch_size=64, seed=seed)
    plans: list[Plan] = [plan(node, skeleton) for skeleton in skeletons]
    readers: list[Reader] = [None] * len(plans)
    pending = {index: _advance(plans[index], None, readers, index) for index in range(len(plans))}
    pending = {index: request for index, request in pending.items() if request is not None}
    while pending:
        pairs = [scorer.fit(request.context, option) for request in pending.values() for option in request.options]
        scores = iter(score.logprob / len(pair.continuation) for score, pair in zip(scorer.score(pairs), pairs))
        answered = {
            index: max(range(len(request.options)), key=[next(scores) for _ in request.options].__getitem__)
            for index, request in pending.items()
        }
        pending = {index: _advance(plans[index], choice, readers, index) for index, choice in answered.items()}
        pending = {index: request for index, request in pending.items() if request is not None}
    return readers


def _advance(row_plan: Plan, choice: int | None, readers: list[Reader], index: int):
    """The row's next choice request, or None once its skeleton is laid out (its reader stored)."""
    try:
        return row_plan.send(choice)
    except StopIteration as finished:
        readers[index] = finished.value
        return None


def _slot_config(config: GenerationConfig, slots: int) -> GenerationConfig:
    """`config` for `slots` masks: as many tokens per model call as it asks for in a free answer."""
    steps = min(WORK_CAP, max(1, math.ceil(config.steps * slots / config.max_new_tokens)))
    return config.replace(max_new_tokens=min(slots, WORK_CAP), steps=steps)


def _fill(
    skeletons: list[Skeleton],
    sets: torch.Tensor,
    config: GenerationConfig,
    seeds: list[int | None],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    callback: StepCallback | None,
) -> list[list[int]]:
    """Denoise skeletons with equally many slots in one batch (EOS-padded on the right)."""
    device = next(model.parameters()).device
    width = max(len(skeleton.ids) for skeleton in skeletons)
    eos = SpecialIds.from_tokenizer(tokenizer).eos
    canvas = torch.full((len(skeletons), width), eos, dtype=torch.long)
    positions = torch.full((len(skeletons), width), -1, dtype=torch.long)
    for row, skeleton in enumerate(skeletons):
        canvas[row, : len(skeleton.ids)] = torch.tensor(skeleton.ids)
        positions[row, : len(skeleton.sets)] = torch.tensor(skeleton.sets)
    constraint = SlotConstraint(sets.to(device), positions.to(device))
    filled = denoise(
        model, tokenizer, canvas.to(device), config, callback=callback, row_seeds=seeds, constraint=constraint
    )
    return [row[: len(skeleton.ids)] for row, skeleton in zip(filled.tolist(), skeletons, strict=True)]
