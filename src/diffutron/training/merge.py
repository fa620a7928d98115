"""Merge LoRA adapters into the masked-LM model, keeping the MLM head (docs/reference-behaviour.md, section 9).

The public tool merged into `AutoModel` and lost the head; here the merge goes into the
`AutoModelForMaskedLM` the adapters were trained on, and the merged model's logits are checked
against the adapter model's on a probe batch before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from diffutron.errors import DiffutronError
from diffutron.files import atomic_directory
from diffutron.model.loading import load_checkpoint
from diffutron.model.loading import load_tokenizer

PROBE_SHAPE = (2, 48)


def probe_batch(tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> torch.Tensor:
    """Random token ids with a few mask tokens, fixed by `seed`."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, len(tokenizer), PROBE_SHAPE, generator=generator)
    ids[:, ::5] = tokenizer.mask_token_id
    return ids


def merge_checked(model: nn.Module, probe: torch.Tensor, tolerance: float) -> tuple[PreTrainedModel, float]:
    """`merge_and_unload` a peft model and check its logits against the adapter's: (merged, max diff)."""
    model.eval()
    probe = probe.to(next(model.parameters()).device)
    with torch.no_grad():
        expected = model(input_ids=probe).logits.float()
        merged = model.merge_and_unload()
        actual = merged(input_ids=probe).logits.float()
    difference = (actual - expected).abs().max().item()
    scale = expected.abs().max().item()
    if not difference <= tolerance * max(1.0, scale):
        raise DiffutronError(
            f"merged logits differ from the adapter model's by {difference:.3g} (logit scale {scale:.3g}, "
            f"tolerance {tolerance:g} relative); nothing was written"
        )
    return merged, difference


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path, overwrite: bool) -> None:
    with atomic_directory(out_dir, overwrite=overwrite) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)


def merge_lora(
    adapter_dir: str | Path,
    out_dir: str | Path,
    *,
    base: str | None = None,
    tolerance: float = 1e-4,
    overwrite: bool = False,
) -> float:
    """Merge `adapter_dir` into its base masked LM, write a plain checkpoint to `out_dir`.

    Returns the largest absolute logit difference seen on the probe batch.
    """
    from peft import PeftModel

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.is_file():
        raise DiffutronError(f"{adapter_dir} is not a LoRA adapter directory (no adapter_config.json)")
    if out_dir.exists() and not overwrite:
        raise DiffutronError(f"{out_dir} already exists; choose another output directory or pass --overwrite")
    base = base or json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise DiffutronError(f"{config_path} names no base model; pass it with --base")
    model, tokenizer = load_checkpoint(base, device="cpu", dtype="float32")
    if (adapter_dir / "tokenizer_config.json").is_file():
        tokenizer = load_tokenizer(str(adapter_dir))
    adapted = PeftModel.from_pretrained(model, adapter_dir)
    merged, difference = merge_checked(adapted, probe_batch(tokenizer), tolerance)
    save_model(merged, tokenizer, out_dir, overwrite)
    return difference
