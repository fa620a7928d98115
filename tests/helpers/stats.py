"""Frequency tests for the sampler's random draws, with fixed seeds so that they cannot be flaky.

Each returns a p-value; tests require p > P_MIN. With fixed seeds a test either always passes or
always fails; the bound only says how unlikely a correct sampler is to fail for some other seed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping

from scipy import stats

P_MIN = 1e-3
MIN_EXPECTED = 5.0  # categories expected less often than this are pooled (the chi-square approximation)


def goodness_of_fit(observed: Iterable[Hashable], probabilities: Mapping[Hashable, float]) -> float:
    """p-value of a chi-square test that the draws in `observed` follow `probabilities`."""
    counts = Counter(observed)
    if set(counts) - set(probabilities):
        return 0.0  # a draw that should never happen
    total = sum(counts.values())
    kept = [c for c in probabilities if probabilities[c] * total >= MIN_EXPECTED]
    pooled = [c for c in probabilities if c not in kept]
    observed_counts = [counts[c] for c in kept]
    expected = [probabilities[c] * total for c in kept]
    if pooled:
        observed_counts.append(sum(counts[c] for c in pooled))
        expected.append(total - sum(expected))
    if len(expected) < 2:
        return 1.0
    return float(stats.chisquare(observed_counts, expected).pvalue)


def same_distribution(first: Iterable[Hashable], second: Iterable[Hashable]) -> float:
    """p-value of a chi-square test that two samples come from one distribution (rare outcomes pooled)."""
    a, b = Counter(first), Counter(second)
    total_a, total_b = sum(a.values()), sum(b.values())
    share = min(total_a, total_b) / (total_a + total_b)
    outcomes = sorted(set(a) | set(b), key=repr)
    kept = [o for o in outcomes if (a[o] + b[o]) * share >= MIN_EXPECTED]
    rows = [[a[o] for o in kept], [b[o] for o in kept]]
    rest = [o for o in outcomes if o not in kept]
    if rest:
        rows[0].append(sum(a[o] for o in rest))
        rows[1].append(sum(b[o] for o in rest))
    if len(rows[0]) < 2:
        return 1.0
    return float(stats.chi2_contingency(rows).pvalue)
