"""log p(continuation | context) under a masked diffusion LM: the MDLM bound (docs/reference-behaviour.md, section 7).

A masked LM gives no exact left-to-right likelihood. The MDLM bound masks m of the L
continuation tokens (m uniform in 1..L, the positions uniform), and scores (L/m) times the
cross-entropy summed over the masked positions; its expectation is a lower bound on
log p. Only the continuation is ever masked and the sequence ends right after it.

Cost matters because every multiple-choice option of every question is one request:
- rows of many requests share one forward pass (right padding plus an attention mask),
- identical masked inputs are run once: one-token options of a question (A/B/C/D) all read
  the same `context + [MASK]`, and so do fully masked continuations of equal length,
- logits are computed only at the masked positions (the output layer dominates the cost
  with a 256k vocabulary),
- when the continuation is short enough that every mask set fits in `mc_num` rows
  (2^L - 1 <= mc_num: L = 1 always, L <= 7 for the default 128), the expectation is
  computed exactly by enumerating the sets instead of sampling them. For L = 1 that is
  the single pass that scores the token itself.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from diffutron.errors import DiffutronError
from diffutron.eval.scoring import cross_entropy_at, pad_right
from diffutron.model.parts import MaskedLMParts
from diffutron.model.tokens import SpecialIds, cut_to_fit, encode_text
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.sampler import denoise


@dataclass(frozen=True)
class Pair:
    """Context and continuation token ids (no special tokens), fitted to the model window."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]
    truncated: bool = False  # the context was cut from the left to fit


@dataclass(frozen=True)
class Score:
    logprob: float
    is_greedy: bool
    truncated: bool


@dataclass(frozen=True)
class _Row:
    """One masked copy of a pair: which continuation offsets are masked, and its weight."""

    pair: int
    offsets: tuple[int, ...]
    weight: float


def mask_sets(length: int, mc_num: int, generator: torch.Generator) -> list[tuple[tuple[int, ...], float]]:
    """(masked continuation offsets, weight) rows; sum(weight * CE over the offsets) ~ -log p.

    Exact enumeration when every non-empty set fits in `mc_num` rows; otherwise `mc_num`
    stratified samples: evenly spaced m values from a random start (each row's m is
    marginally uniform in 1..L), positions drawn uniformly without replacement.
    """
    if 2**length - 1 <= mc_num:
        return [
            (subset, 1.0 / (size * math.comb(length, size)))
            for size in range(1, length + 1)
            for subset in itertools.combinations(range(length), size)
        ]
    start = int(torch.randint(0, length, (1,), generator=generator))
    rows = []
    for row in range(mc_num):
        masked = (start + row * length // mc_num) % length + 1
        offsets = torch.randperm(length, generator=generator)[:masked].sort().values
        rows.append((tuple(offsets.tolist()), length / masked / mc_num))
    return rows


class ContinuationScorer:
    """Scores many context/continuation pairs with batched forward passes.

    `batch_size` counts distinct masked inputs per forward pass (a request has up to `mc_num`).
    Randomness is drawn per pair from `seed` and the pair's ids, so a pair's score does
    not depend on which other pairs share its batch or on their order.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        mc_num: int = 128,
        batch_size: int = 32,
        max_length: int | None = None,
        seed: int = 0,
        check_greedy: bool = False,
    ) -> None:
        for name, value in (("mc_num", mc_num), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DiffutronError(f"{name} must be an integer >= 1, got {value!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.parts = MaskedLMParts(model)
        self.ids = SpecialIds.from_tokenizer(tokenizer)
        self.mc_num = mc_num
        self.batch_size = batch_size
        self.max_length = int(max_length or model.config.max_position_embeddings)
        if self.max_length < 1:
            raise DiffutronError(f"max_length must be >= 1, got {self.max_length}")
        self.seed = seed
        self.check_greedy = check_greedy

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, context: str, continuation: str) -> Pair:
        """Encode both parts WITHOUT special tokens and join the id lists (docs/reference-behaviour.md, section 7)."""
        return self.fit(self._encode(context), self._encode(continuation))

    def fit(self, context: Sequence[int], continuation: Sequence[int]) -> Pair:
        """Cut the context from the left so that context + continuation fits the window."""
        if len(continuation) > self.max_length:
            raise DiffutronError(
                f"a continuation of {len(continuation)} tokens does not fit the model's window of "
                f"{self.max_length} tokens; shorten it or raise max_length"
            )
        kept, truncated = cut_to_fit(context, self.max_length - len(continuation))
        return Pair(tuple(kept), tuple(continuation), truncated)

    @torch.no_grad()
    def score(self, pairs: Sequence[Pair], *, progress: bool = False) -> list[Score]:
        """log p(continuation | context) estimates and greedy flags, in the order given."""
        inputs: dict[tuple[tuple[int, ...], tuple[int, ...]], list[_Row]] = {}
        for index, pair in enumerate(pairs):
            if pair.continuation:
                generator = torch.Generator().manual_seed(self._pair_seed(pair))
                for offsets, weight in mask_sets(len(pair.continuation), self.mc_num, generator):
                    masked = list(pair.continuation)
                    for offset in offsets:
                        masked[offset] = self.ids.mask
                    # options of one question often give the same input (one-token options,
                    # fully masked continuations of equal length): one row serves them all
                    inputs.setdefault((pair.context, tuple(masked)), []).append(_Row(index, offsets, weight))
        totals = torch.zeros(len(pairs), dtype=torch.float64)
        greedy = torch.ones(len(pairs), dtype=torch.bool)
        keys = sorted(inputs, key=lambda key: -(len(key[0]) + len(key[1])))
        batches = [keys[i : i + self.batch_size] for i in range(0, len(keys), self.batch_size)]
        for batch in tqdm(batches, desc="likelihood", unit="batch", disable=not progress):
            self._score_batch(pairs, [(key, inputs[key]) for key in batch], totals, greedy)
        return [
            Score(-float(totals[i]), self._is_greedy(pair, bool(greedy[i])), pair.truncated)
            for i, pair in enumerate(pairs)
        ]

    def _score_batch(
        self,
        pairs: Sequence[Pair],
        batch: list[tuple[tuple[tuple[int, ...], tuple[int, ...]], list[_Row]]],
        totals: torch.Tensor,
        greedy: torch.Tensor,
    ) -> None:
        """One forward pass over distinct masked inputs; every row using an input is scored."""
        row_index, positions, targets, entry_owner = [], [], [], []
        consumers: list[_Row] = []
        for b, ((context, _), rows) in enumerate(batch):
            for row in rows:
                continuation = pairs[row.pair].continuation
                for offset in row.offsets:
                    row_index.append(b)
                    positions.append(len(context) + offset)
                    targets.append(continuation[offset])
                    entry_owner.append(len(consumers))
                consumers.append(row)
        sequences = [context + masked for (context, masked), _ in batch]
        input_ids, attention_mask = pad_right(sequences, self.ids.pad, self.device)
        losses, hits = cross_entropy_at(self.parts, input_ids, attention_mask, row_index, positions, targets)
        owner = torch.tensor(entry_owner)
        per_row = torch.zeros(len(consumers), dtype=torch.float64).index_add_(0, owner, losses.double().cpu())
        missed = torch.zeros(len(consumers), dtype=torch.long).index_add_(0, owner, (~hits).long().cpu())
        pair_index = torch.tensor([row.pair for row in consumers])
        weights = torch.tensor([row.weight for row in consumers], dtype=torch.float64)
        totals.index_add_(0, pair_index, per_row * weights)
        greedy[pair_index[missed > 0]] = False

    def _is_greedy(self, pair: Pair, all_masked_hits: bool) -> bool:
        """Exact for one token; longer continuations need `check_greedy` (L decoding steps)."""
        if len(pair.continuation) <= 1:
            return all_masked_hits
        if not self.check_greedy:
            return False
        length = len(pair.continuation)
        canvas = torch.tensor([pair.context + (self.ids.mask,) * length], device=self.device)
        config = GenerationConfig(
            max_new_tokens=length,
            steps=length,
            block_length=length,
            temperature=0.0,
            repetition_penalty=1.0,
            early_stop=False,
        )
        decoded = denoise(self.model, self.tokenizer, canvas, config)[0, len(pair.context) :]
        return decoded.tolist() == list(pair.continuation)

    def _encode(self, text: str) -> list[int]:
        return encode_text(self.tokenizer, text)

    def _pair_seed(self, pair: Pair) -> int:
        digest = hashlib.blake2b(repr((self.seed, pair.context, pair.continuation)).encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "little") & (2**63 - 1)
