"""Merge LoRA adapters into the masked-LM model, keeping the MLM head (docs/reference-behaviour.md, section 9).

The public tool merged into `AutoModel` and lost the head; here the merge goes into the
`AutoModelForMaskedLM` the adapters were trained on, and the merged model's logits are checked
against the adapter model's on a probe batch before anything is written. Before any loading, the
destination is checked (never the adapter itself or a folder holding or inside it) and the adapter's
weights are checked whole; a base whose layers do not match the adapter's tensors is refused.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from diffutron.errors import DiffutronError
from diffutron.files import atomic_directory, check_destination
from diffutron.model.adapters import ADAPTER_CONFIG, AdapterMismatch, attach_adapter, read_adapter
from diffutron.model.loading import load_checkpoint, load_tokenizer
from diffutron.training.run_dir import is_run_directory

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

    The merged model gets its model card (from the adapter's run when the adapter is RUN_DIR/adapter
    or one of its checkpoints). Returns the largest absolute logit difference seen
    on the probe batch.
    """
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    config = read_adapter(adapter_dir)
    base = base or config.get("base_model_name_or_path")
    check_destination(out_dir, overwrite=overwrite, inputs=[adapter_dir, base])
    if not base:
        raise DiffutronError(f"{adapter_dir / ADAPTER_CONFIG} names no base model; pass it with --base")
    model, tokenizer = load_checkpoint(base, device="cpu", dtype="float32")
    if (adapter_dir / "tokenizer_config.json").is_file():
        tokenizer = load_tokenizer(str(adapter_dir))
    adapted = load_adapter(model, adapter_dir, base)
    merged, difference = merge_checked(adapted, probe_batch(tokenizer), tolerance)
    save_model(merged, tokenizer, out_dir, overwrite)
    write_merged_card(adapter_dir, out_dir)
    return difference


def write_merged_card(adapter_dir: Path, out_dir: Path) -> None:
    from diffutron.training.card import write_card
    from diffutron.training.checkpoints import PREFIX

    run_dir = adapter_dir.parent if is_run_directory(adapter_dir.parent) else None
    step = adapter_dir.name.removeprefix(PREFIX)
    up_to_step = int(step) if run_dir and adapter_dir.name.startswith(PREFIX) and step.isdigit() else None
    write_card(out_dir, run_dir=run_dir, up_to_step=up_to_step, overwrite=True)


def load_adapter(model: PreTrainedModel, adapter_dir: Path, base: str) -> nn.Module:
    """`model` with the adapter loaded; an adapter whose tensors do not fit the base's layers is refused."""
    try:
        return attach_adapter(model, adapter_dir, "default", base)
    except AdapterMismatch as error:
        raise DiffutronError(f"{error}; pass the model it was trained on with --base") from None
