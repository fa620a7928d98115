"""Special token ids, always read from the tokenizer (never hard-coded)."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from diffutron.errors import DiffutronError


@dataclass(frozen=True)
class SpecialIds:
    mask: int
    eos: int
    pad: int

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerBase) -> SpecialIds:
        if tokenizer.mask_token_id is None:
            raise DiffutronError(
                "the tokenizer has no mask token; a masked diffusion model needs one "
                "(set `mask_token` in tokenizer_config.json / special_tokens_map.json)"
            )
        eos = tokenizer.eos_token_id
        if eos is None:
            eos = tokenizer.sep_token_id
        if eos is None:
            raise DiffutronError(
                "the tokenizer has neither an eos nor a sep token; the sampler pads the canvas "
                "with it and stops at it (set `eos_token` in tokenizer_config.json)"
            )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        return cls(mask=tokenizer.mask_token_id, eos=eos, pad=pad)

    @property
    def stops(self) -> tuple[int, ...]:
        """Token ids that end an answer."""
        return (self.eos, self.pad)
