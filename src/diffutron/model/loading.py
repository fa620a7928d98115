"""Load a masked-LM checkpoint (local directory or hub id) with safetensors only."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from diffutron.errors import DiffutronError
from diffutron.model.precision import quantize_int8
from diffutron.model.tokens import SpecialIds

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
INT8 = "int8"


def default_model_path() -> Path | None:
    """The small model shipped inside the package, if this install has it."""
    path = Path(str(resources.files("diffutron") / "assets" / "default"))
    return path if (path / "config.json").is_file() else None


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise DiffutronError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from error


def int8_device(device: str | torch.device | None) -> torch.device:
    """int8 is a CPU mode: "auto" means the CPU for it, an accelerator is refused before any loading."""
    if device is None or str(device) == "auto":
        return torch.device("cpu")
    target = resolve_device(device)
    if target.type != "cpu":
        raise DiffutronError(
            f"int8 works on the CPU only, not on {target}; use --device cpu (or auto) with int8, "
            "or bfloat16 on an accelerator"
        )
    return target


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """`None`/"auto": bfloat16 on CUDA devices that support it, float32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in DTYPES:
        raise DiffutronError(
            f"unknown dtype {dtype!r}; choose one of: auto, {', '.join(DTYPES)}, {INT8} (CPU only)"
        )
    return DTYPES[dtype]


def load_checkpoint(
    name_or_path: str | Path | None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model (in eval mode, on `device`) and tokenizer; never runs code from the checkpoint."""
    source = _resolve_source(name_or_path)
    quantize = dtype == INT8  # dynamic int8 Linear layers on float32 weights
    target = int8_device(device) if quantize else resolve_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        model = AutoModelForMaskedLM.from_pretrained(
            source,
            dtype=resolve_dtype(torch.float32 if quantize else dtype, target),
            use_safetensors=True,
            trust_remote_code=False,
        )
    except (OSError, ValueError) as error:
        raise DiffutronError(_load_failure(source, error)) from error
    SpecialIds.from_tokenizer(tokenizer)
    model = model.to(target).eval()
    return (quantize_int8(model) if quantize else model), tokenizer


def _resolve_source(name_or_path: str | Path | None) -> str:
    if name_or_path is None:
        default = default_model_path()
        if default is None:
            raise DiffutronError(
                "this install has no embedded default model: pass one with --model / "
                "name_or_path (a local directory or a hub id such as diffutron/DiffutronLM-0.3B-Instruct)"
            )
        return str(default)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        _check_directory(path)
        return str(path)
    text = str(name_or_path)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise DiffutronError(f"model directory {text!r} does not exist")
    return text


def _check_directory(path: Path) -> None:
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any(path.glob("*.safetensors")):
        found = sorted(p.name for p in path.glob("*.bin")) or ["no weight files"]
        missing.append(f"safetensors weights (found: {', '.join(found)}; convert them to safetensors)")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        missing.append("a tokenizer (tokenizer.json / tokenizer_config.json)")
    if missing:
        raise DiffutronError(f"{path} is not a usable checkpoint: missing {'; '.join(missing)}")


def _load_failure(source: str, error: Exception) -> str:
    if Path(source).is_dir():
        return f"could not load the checkpoint in {source}: {error}"
    return (
        f"could not load {source!r} from the Hugging Face hub ({error}). If this machine is "
        f"offline, download it elsewhere first (`huggingface-cli download {source}`), copy the "
        "cache (HF_HOME) here and set HF_HUB_OFFLINE=1, or pass a local directory."
    )
