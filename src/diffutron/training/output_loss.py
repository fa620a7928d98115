"""The MDLM loss computed inside the model's output layer, at the masked positions only.

A masked LM's output layer turns every position's hidden state into vocabulary logits; with a
256k vocabulary that (batch x length x 256k) tensor, its float32 copy for the cross-entropy and
their gradients dominate a training step's memory (tens of GB for the paper's 64 x 512 batch).
The loss only reads the masked positions, so here the output layer is evaluated there only, in
chunks of rows, and each chunk's float32 cross-entropy and its gradients are computed and
reduced at once: no (masked rows x vocabulary) tensor exists, in float32 or otherwise.

It happens inside the model's forward (hooks on the output layer), so DDP, FSDP and DeepSpeed
see one ordinary forward: the output layer's weights are gathered while it runs, and the loss
leaves the model as its `logits` output.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffutron.errors import DiffutronError

# float32 logits per chunk: 64M elements (256 MiB), so at a 256k vocabulary 256 rows per chunk. A chunk's
# logits, worked on in place, are the loss's fixed share of the peak; each chunk reads the output layer's
# weights twice (logits, gradient), which at 256 rows is still a small part of its matrix products.
CHUNK_ELEMENTS = 64 * 2**20


def chunk_rows_for(vocabulary: int, elements: int = CHUNK_ELEMENTS) -> int:
    return max(1, elements // max(1, vocabulary))


def _compute_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype an `nn.Linear` call would compute in here: autocast's if active, else the weight's."""
    device_type = weight.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return weight.dtype


def _chunk_loss(
    chunk: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    target: torch.Tensor,
    coefficient: torch.Tensor,
    want_gradient: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """sum(coefficient * cross-entropy) over the chunk in float32, and its gradient w.r.t. the logits
    (coefficient * (softmax - one_hot), float32) when wanted.

    The log-softmax is taken apart (max, exp, sum) so that every step works in the logits' own
    storage: one float32 (rows x vocabulary) tensor per chunk, not the two a log_softmax needs.
    """
    logits = F.linear(chunk, weight, bias).float()
    rows = torch.arange(logits.shape[0], device=logits.device)
    target_logit = logits[rows, target]
    maximum = logits.amax(dim=-1)
    exponentials = logits.sub_(maximum[:, None]).exp_()
    del logits
    normalizer = exponentials.sum(dim=-1)
    log_probability = target_logit - maximum - normalizer.log()
    loss = -(log_probability * coefficient).sum()
    if not want_gradient:
        return loss, None
    gradient = exponentials.div_(normalizer[:, None])
    del exponentials
    gradient[rows, target] -= 1.0
    gradient.mul_(coefficient[:, None])
    return loss, gradient


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """sum_i coefficient_i * cross_entropy(features_i @ weight.T + bias, target_i), chunk by chunk.

    The gradients are computed in the forward, one chunk at a time while its logits exist, and
    kept (features x hidden, and the output layer's own when it is trained); the backward only
    scales them by the incoming gradient. The loss is linear in each row's cross-entropy with
    coefficients known up front, which is what makes this exact.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        features: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        coefficients: torch.Tensor,
        chunk_rows: int,
    ) -> torch.Tensor:
        need_features, need_weight, need_bias = ctx.needs_input_grad[:3]
        dtype = _compute_dtype(weight)
        with torch.autocast(weight.device.type, enabled=False):
            weight_c = weight.to(dtype)
            bias_c = bias.to(dtype) if bias is not None else None
            total = torch.zeros((), dtype=torch.float32, device=features.device)
            grad_features = torch.empty_like(features) if need_features else None
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
            grad_bias = (
                torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
                if need_bias and bias is not None
                else None
            )
            want_gradient = need_features or need_weight or need_bias
            for start in range(0, features.shape[0], chunk_rows):
                rows = slice(start, start + chunk_rows)
                chunk = features[rows].to(dtype)
                loss, gradient = _chunk_loss(chunk, weight_c, bias_c, targets[rows], coefficients[rows], want_gradient)
                total += loss
                if gradient is None:
                    continue
                if grad_bias is not None:
                    grad_bias += gradient.sum(dim=0)
                gradient = gradient.to(dtype)  # frees the float32 one when dtype is lower
                if grad_features is not None:
                    grad_features[rows] = (gradient @ weight_c).to(features.dtype)
                if grad_weight is not None:
                    grad_weight.add_(gradient.t() @ chunk)  # accumulated in float32 across chunks
                del gradient  # one chunk's logits alive at a time: free them before the next is computed
        ctx.save_for_backward(grad_features, grad_weight, grad_bias)
        ctx.weight_dtype = weight.dtype
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        grad_features, grad_weight, grad_bias = ctx.saved_tensors
        scale = grad_output.float()
        return (
            grad_features * scale.to(grad_features.dtype) if grad_features is not None else None,
            (grad_weight * scale).to(ctx.weight_dtype) if grad_weight is not None else None,
            (grad_bias * scale).to(ctx.bias_dtype) if grad_bias is not None else None,
            None,
            None,
            None,
        )


def chunked_linear_cross_entropy(
    features: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    coefficients: torch.Tensor,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """sum_i coefficients_i * CE(linear(features_i), targets_i) in float32, never holding all logits.

    features (rows, hidden); weight (vocabulary, hidden); targets (rows,); coefficients (rows,).
    """
    rows = chunk_rows or chunk_rows_for(weight.shape[0])
    return _ChunkedLinearCrossEntropy.apply(features, weight, bias, targets, coefficients.float(), rows)


@dataclass
class _Targets:
    masked: torch.Tensor  # (batch, length) bool
    labels: torch.Tensor  # (masked rows,)
    coefficients: torch.Tensor  # (masked rows,)
    features: torch.Tensor | None = None


class MaskedOutputLoss:
    """Hooks on a masked LM's output layer that turn one forward into the weighted masked loss.

    Outside `scoring(...)` the model is untouched (inference, evaluation, merging). Inside it,
    the output layer receives the hidden states of the masked positions only, and the model's
    `logits` output is the scalar loss.
    """

    def __init__(self, model: nn.Module, chunk_rows: int | None = None) -> None:
        layer = model.get_output_embeddings()
        if not isinstance(layer, nn.Linear):
            raise DiffutronError(
                f"the masked loss needs a linear output layer; {type(model).__name__} has {type(layer).__name__}"
            )
        self.chunk_rows = chunk_rows or chunk_rows_for(layer.out_features)
        self._targets: _Targets | None = None
        self._handles = [
            layer.register_forward_pre_hook(self._take_masked_rows),
            layer.register_forward_hook(self._loss_instead_of_logits),
        ]

    @contextmanager
    def scoring(self, masked: torch.Tensor, labels: torch.Tensor, coefficients: torch.Tensor) -> Iterator[None]:
        """Within the block, a forward returns the loss as `logits`.

        masked: (batch, length) bool; labels: (batch, length) targets; coefficients: one per masked
        position, in `masked.nonzero()` order (the loss is sum(coefficient * cross-entropy)).
        """
        self._targets = _Targets(masked, labels[masked], coefficients)
        try:
            yield
        finally:
            self._targets = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def _take_masked_rows(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        targets = self._targets
        if targets is None:
            return None
        hidden = args[0]
        if hidden.shape[:2] != targets.masked.shape:
            raise DiffutronError(
                f"the output layer saw hidden states of shape {tuple(hidden.shape)}, not (batch, length) = "
                f"{tuple(targets.masked.shape)}: the model's forward is not a plain masked LM's"
            )
        targets.features = hidden[targets.masked]
        return (targets.features[:0], *args[1:])  # the layer itself then costs nothing

    def _loss_instead_of_logits(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> Any:
        targets = self._targets
        if targets is None:
            return None
        assert targets.features is not None
        features, targets.features = targets.features, None
        return chunked_linear_cross_entropy(
            features, module.weight, module.bias, targets.labels, targets.coefficients, self.chunk_rows
        )
