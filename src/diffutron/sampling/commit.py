"""Which candidates a step commits: the model card's count schedule, or Fast-dLLM's parallel rules.

The rules live one per file in `sampling/rules/` (how a rule is written and named is said there);
this module keeps their public names where they have always been.
"""

from __future__ import annotations

from diffutron.sampling.rules import Budget, CommitRule, Plan, commit_rule, rule_class, rule_names
from diffutron.sampling.rules.count import CountSchedule
from diffutron.sampling.rules.factor import Factor
from diffutron.sampling.rules.threshold import Threshold

__all__ = [
    "Budget",
    "CommitRule",
    "CountSchedule",
    "Factor",
    "Plan",
    "Threshold",
    "commit_rule",
    "rule_class",
    "rule_names",
]
