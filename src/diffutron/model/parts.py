"""Call a masked LM's encoder and its output layer separately.

With a 256k vocabulary the output layer costs more than the encoder, and the sampler only
needs logits at the masks up to the end of the current block: computing them there alone gives
the same numbers for a fraction of the work.
"""

from __future__ import annotations

import torch
from torch import nn


class MaskedLMParts:
    """`hidden(ids, mask)` then `logits(selected_hidden)`; any masked LM works.

    Models whose head is known (ModernBERT, BERT-like `cls`) are split; for any other the
    full logits are computed in `hidden` and `logits` is the identity, which stays exact.
    """

    def __init__(self, model: nn.Module) -> None:
        if hasattr(model, "get_base_model"):  # a peft wrapper
            model = model.get_base_model()
        self.model = model
        if hasattr(model, "model") and hasattr(model, "head") and hasattr(model, "decoder"):
            compiled = getattr(model, COMPILED_ENCODER, None)
            self._encoder = model.model if compiled is None else compiled
            self._head = lambda hidden: model.decoder(model.head(hidden))
        else:
            self._encoder = None
            self._head = None

    @property
    def split(self) -> bool:
        return self._encoder is not None

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if self._encoder is None:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return self._encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def logits(self, hidden: torch.Tensor, *, pad: bool = True) -> torch.Tensor:
        """Float32 logits for hidden states taken from `hidden(...)`.

        With `pad`, the rows are padded to a GEMM shape whose results do not depend on the
        row count (at least MIN_GEMM_ROWS, a multiple of 4: below that, CPU BLAS switches
        kernels and rounds differently), so the logits of a few selected rows are
        bit-identical to those of a full-canvas pass.
        """
        if self._head is None:
            return hidden.float()
        rows = hidden.shape[0]
        if not pad or hidden.dim() != 2:
            return self._head(hidden).float()
        padded = max(MIN_GEMM_ROWS, -(-rows // _GEMM_ROW_MULTIPLE) * _GEMM_ROW_MULTIPLE)
        filler = hidden.new_zeros(padded - rows, hidden.shape[1])
        return self._head(torch.cat([hidden, filler]))[:rows].float()


MIN_GEMM_ROWS = 16
_GEMM_ROW_MULTIPLE = 4
COMPILED_ENCODER = "_diffutron_compiled_encoder"  # set on a masked LM by `compile_encoder`


def compile_encoder(model: nn.Module) -> bool:
    """Give the plain encoder pass a `torch.compile`d twin (dynamic shapes: batches of any size and
    width share its graphs); False for a model whose encoder is not known.

    Compiling fuses the encoder's element-wise work, which batching does not make cheaper; it may
    round differently from the eager model, as a batch does. `MaskedLMParts.hidden` (the sampler
    without a cache, likelihood scoring) uses the twin; the block cache and training keep the
    eager encoder. The twin is not a submodule: it adds nothing to the model's state dict.
    """
    if hasattr(model, "get_base_model"):  # a peft wrapper
        model = model.get_base_model()
    if not MaskedLMParts(model).split:
        return False
    object.__setattr__(model, COMPILED_ENCODER, torch.compile(model.model, dynamic=True))
    return True
