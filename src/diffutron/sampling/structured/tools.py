"""Tool calls: each function's parameters schema as the skeleton of its arguments, and the model's
likelihood of calling a tool at all (OpenAI's tool_choice "auto").

A call is written `{"name": ..., "arguments": {...}}` (`model.chat.tool_call_text`), the same text
a conversation's earlier calls are rendered with, so the model sees one shape for both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from diffutron.model.tokens import SpecialIds, encode_text
from diffutron.sampling.structured.schema import ToolCall, read_schema
from diffutron.sampling.structured.skeleton import tool_call_opening

NO_PARAMETERS: Mapping[str, Any] = {"type": "object", "properties": {}}  # a function given without parameters


@dataclass(frozen=True)
class Function:
    """A callable function as a request describes it (OpenAI's `tools[].function`)."""

    name: str
    parameters: Mapping[str, Any] | None = None
    description: str | None = None


def tool_call_node(functions: Sequence[Function], where: str = "tools") -> ToolCall:
    """The skeleton of a call of one of `functions`; a schema outside the subset is refused naming
    its place (`where`.0.function.parameters...)."""
    return ToolCall(
        tuple(
            (
                function.name,
                read_schema(
                    NO_PARAMETERS if function.parameters is None else function.parameters,
                    f"{where}.{index}.function.parameters",
                ),
            )
            for index, function in enumerate(functions)
        )
    )


def tools_instruction(functions: Sequence[Function]) -> str:
    """What the system turn tells the model about the tools it may call, and how a call is written."""
    lines = [
        f"- {function.name}: {function.description.strip()}" if function.description else f"- {function.name}"
        for function in functions
    ]
    return (
        "Şu araçları çağırabilirsin:\n"
        + "\n".join(lines)
        + '\nBir araç çağırmak için yalnızca {"name": "araç adı", "arguments": {...}} biçiminde JSON yaz.'
    )


@torch.inference_mode()
def call_probability(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: Sequence[int], masks: int
) -> float:
    """The model's probability that the answer opens with a tool call: that of a call's first token
    at the first of `masks` masked answer positions after `prompt` (as a free answer starts), against
    every other first token together (answering)."""
    first = encode_text(tokenizer, tool_call_opening("f"))[0]
    device = next(model.parameters()).device
    canvas = torch.tensor([[*prompt, *[SpecialIds.from_tokenizer(tokenizer).mask] * masks]], device=device)
    logits = model(input_ids=canvas, attention_mask=torch.ones_like(canvas)).logits[0, len(prompt)]
    return float(torch.softmax(logits.float(), dim=-1)[first])
