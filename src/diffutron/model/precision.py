"""CPU precision modes for inference: bfloat16 where the CPU computes it natively, dynamic int8.

Generation on a CPU is bound by reading weights: with a 256k vocabulary the output layer alone
is 197M parameters. bfloat16 halves the bytes read; dynamic int8 (weights quantized per output
channel once, activations per call) quarters them, for every Linear layer including the output
layer. Both change the numbers, so neither is used by the `exact` speed preset.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from diffutron.errors import DiffutronError


def cpu_bfloat16_supported() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16, AMX or ARM BF16)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every `nn.Linear` of `model` (output layer included) by a dynamic int8 one, in place.

    The output layer is tied to the input embeddings; those stay in float (an embedding lookup
    reads one row per token), the output layer gets its own int8 copy. For inference only:
    a quantized model cannot be trained or saved as a checkpoint.
    """
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise DiffutronError(f"int8 works on the CPU only (the model is on {device}); use bfloat16 on an accelerator")
    if next(model.parameters()).dtype != torch.float32:
        raise DiffutronError("int8 quantization starts from float32 weights; load the model in float32")
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, but its fbgemm dynamic int8
        # Linear is still the fastest CPU kernel available in torch itself.
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(
            model,
            {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8,
            inplace=True,
        )
    return model


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(module, torch.ao.nn.quantized.dynamic.Linear) for module in model.modules())
