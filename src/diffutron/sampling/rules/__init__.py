"""Commit rules: which of the positions due at a model call get their candidate token.

One file per rule: `rules/<name>.py` defines a `CommitRule` subclass whose `name` is the file's
name. Naming it is how it is reached (`GenerationConfig(rule="<name>")`, `--rule`, the HTTP field
`rule`, a preset); its knobs are the `GenerationConfig` fields whose `Setting.rule` names it
(`threshold=0.9` alone picks `rule="threshold"`). The names and their lookup live in
`sampling/rule_registry.py`, which the config reads without importing the rules.

A rule plans each row's block when the row starts it, then, at every model call, sees the model's
`Predictions` at the positions due (the masks up to the end of the row's block, of rows at work)
and returns a (rows, width) bool grid of the positions to fill.

A rule with `planned` gets a `Budget` at each call from its plans (the count schedule and the rules
built on it); one with `until_filled` ends a row's block as soon as it is full (before its plan
runs out, for a planned one). A rule with `revises` also sees the tokens already decided in the row's
block (`Predictions.decided`, with `held_probability`) and may mask them again (`revoke`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from diffutron.sampling.rule_registry import DEFAULT_RULE, register, rule_class, rule_names

if TYPE_CHECKING:
    import torch

    from diffutron.sampling.config import GenerationConfig
    from diffutron.sampling.predictions import Predictions

__all__ = ["DEFAULT_RULE", "Budget", "CommitRule", "Plan", "commit_rule", "rule_class", "rule_names"]


@dataclass(frozen=True)
class Budget:
    """How many positions each row may commit at one call, on the host (free to read) and on the device."""

    counts: tuple[int, ...]
    on_device: torch.Tensor  # (rows,) long, the same counts


Plan = tuple[int, ...] | None  # a row's counts per call in its block; None: as many calls as it needs


class CommitRule:
    """A commit rule; subclasses set `name` and `until_filled` and implement `choose`."""

    name: ClassVar[str]
    until_filled: ClassVar[bool] = True  # a row's block ends once no mask up to the block's end is left
    planned: ClassVar[bool] = False  # `choose` gets a `Budget` from the rows' plans
    revises: ClassVar[bool] = False  # sees the block's decided tokens too, and may mask them again

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        register(cls)

    @classmethod
    def from_config(cls, config: GenerationConfig, steps_per_block: int) -> CommitRule:
        """The rule with its knobs (`config.rule_settings()`) as keyword arguments."""
        return cls(**config.rule_settings())

    @classmethod
    def check(cls, config: GenerationConfig) -> None:
        """Refuse settings the rule cannot work with (a `SettingError` naming the field)."""

    def plans(self, masked: int, generators: Sequence[torch.Generator | None], device: torch.device) -> list[Plan]:
        """The plans of rows starting a block of `masked` masks, drawn from their own generators; a rule
        that runs a block until it is full needs none (a block takes at most `masked` calls)."""
        return [None] * len(generators)

    def choose(self, predictions: Predictions, budget: Budget | None) -> torch.Tensor:
        """(rows, width) bool: the positions to commit at this call."""
        raise NotImplementedError

    def revoke(self, predictions: Predictions, committed: torch.Tensor) -> torch.Tensor:
        """(rows, width) bool: decided positions to mask again at this call (rules that `revise`)."""
        raise NotImplementedError


def commit_rule(config: GenerationConfig, steps_per_block: int) -> CommitRule:
    """The rule `config` asks for; `steps_per_block` only matters to the count schedule."""
    return rule_class(config.commit_rule).from_config(config, steps_per_block)
