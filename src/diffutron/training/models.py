"""Build the model a recipe trains: from a checkpoint or from scratch, optionally with LoRA."""

from __future__ import annotations

import inspect
import logging

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    ModernBertConfig,
    ModernBertForMaskedLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from diffutron.errors import DiffutronError
from diffutron.model.loading import describe_load_failure, load_checkpoint, load_tokenizer
from diffutron.model.tokens import SpecialIds
from diffutron.training.config import LoraSettings, Recipe

logger = logging.getLogger(__name__)

HEAD_PREFIXES = ("head.", "decoder")  # ModernBertForMaskedLM's output layer: never adapted


def scratch_config(settings: dict, tokenizer: PreTrainedTokenizerBase) -> ModernBertConfig:
    """A ModernBertConfig from the recipe's fields; vocabulary and special ids come from the tokenizer."""
    valid = [
        name
        for name in inspect.signature(ModernBertConfig.__init__).parameters
        if name not in ("self", "kwargs", "transformers_version", "architectures")
    ]
    special = SpecialIds.from_tokenizer(tokenizer)
    derived = {
        "vocab_size": len(tokenizer),
        "pad_token_id": special.pad,
        "eos_token_id": special.eos,
        "bos_token_id": tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id,
        "cls_token_id": tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id,
        "sep_token_id": tokenizer.sep_token_id if tokenizer.sep_token_id is not None else special.eos,
    }
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise DiffutronError(
            f"unknown ModernBertConfig field(s) in model.from_scratch: {', '.join(unknown)}; "
            f"valid fields: {', '.join(name for name in valid if name not in derived)}"
        )
    clashing = sorted(set(settings) & set(derived))
    if clashing:
        raise DiffutronError(
            f"model.from_scratch must not set {', '.join(clashing)}: they are taken from the tokenizer"
        )
    return ModernBertConfig(**derived, **settings)


def build_model(recipe: Recipe, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """The float32 model to train (weights loaded or freshly initialised with the recipe's seed)."""
    if recipe.model.from_scratch is not None:
        torch.manual_seed(recipe.seed)
        model = ModernBertForMaskedLM(scratch_config(recipe.model.from_scratch, tokenizer))
    else:
        model, _ = load_checkpoint(recipe.model.name_or_path, device="cpu", dtype="float32")
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            raise DiffutronError(
                f"the tokenizer {recipe.tokenizer} has {len(tokenizer)} tokens but the model's embedding has "
                f"only {model.get_input_embeddings().num_embeddings} rows; use the model's own tokenizer"
            )
    set_attention(model, recipe.training.attention)
    return model.train()


def set_attention(model: PreTrainedModel, implementation: str) -> None:
    """Switch the model's attention kernel (sdpa, eager, flash_attention_2), or say why it cannot be."""
    if implementation == "flash_attention_2" and not torch.cuda.is_available():
        raise DiffutronError(
            "training.attention flash_attention_2 needs a CUDA GPU; use sdpa (the default) or eager here"
        )
    try:
        model.set_attn_implementation(implementation)
    except (ImportError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DiffutronError(
            f"training.attention {implementation} is not available here ({reason}); "
            "install its package (flash_attention_2: pip install flash-attn) or use sdpa"
        ) from error


def build_meta_model(recipe: Recipe) -> PreTrainedModel:
    """The model's shape without weights (meta device): reads config.json only."""
    if recipe.model.from_scratch is not None:
        config = scratch_config(recipe.model.from_scratch, load_tokenizer(str(recipe.tokenizer)))
    else:
        source = recipe.model.name_or_path
        try:
            config = AutoConfig.from_pretrained(source, trust_remote_code=False)
        except (OSError, ValueError) as error:
            raise DiffutronError(describe_load_failure(str(source), error)) from error
    with torch.device("meta"):
        return AutoModelForMaskedLM.from_config(config, trust_remote_code=False)


def linear_module_names(model: nn.Module) -> list[str]:
    """Full names of the model's nn.Linear modules."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def _matches(name: str, target: str) -> bool:
    """peft's rule for a plain-string target: the name itself or its last dotted components."""
    return name == target or name.endswith("." + target)


def apply_lora(model: PreTrainedModel, settings: LoraSettings) -> nn.Module:
    """Wrap `model` with LoRA adapters; every target must match a linear layer outside the MLM head."""
    from peft import LoraConfig, get_peft_model

    linears = linear_module_names(model)
    short_names = sorted({name.rsplit(".", 1)[-1] for name in linears})
    encoder_names = sorted({name.rsplit(".", 1)[-1] for name in linears if not name.startswith(HEAD_PREFIXES)})
    for target in settings.target_modules:
        hits = [name for name in linears if _matches(name, target)]
        if not hits:
            raise DiffutronError(
                f"LoRA target {target!r} matches no linear module; linear modules found: {', '.join(short_names)}"
            )
        in_head = [name for name in hits if name.startswith(HEAD_PREFIXES)]
        if in_head:
            raise DiffutronError(
                f"LoRA target {target!r} matches the MLM head ({', '.join(in_head)}), which is never adapted; "
                f"choose among the encoder's linear modules: {', '.join(encoder_names)}"
            )
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
    )
    return get_peft_model(model, config)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total), each shared (tied) tensor counted once."""
    parameters = list(model.parameters())  # parameters() yields a tied tensor once
    trainable = sum(p.numel() for p in parameters if p.requires_grad)
    return trainable, sum(p.numel() for p in parameters)


def describe_parameters(model: nn.Module) -> str:
    trainable, total = count_parameters(model)
    return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)"
