"""Load a masked-LM checkpoint (local directory or hub id) with safetensors only."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError, safe_open
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from diffutron.errors import DiffutronError
from diffutron.files import is_local_path
from diffutron.model.precision import quantize_int8
from diffutron.model.tokens import SpecialIds

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
INT8 = "int8"


def default_model_path() -> Path | None:
    """The small model shipped inside the package, if this install has it."""
    path = Path(str(resources.files("diffutron") / "assets" / "default"))
    return path if (path / "config.json").is_file() else None


def parse_device(device: str | torch.device | None) -> torch.device:
    """The device a name means ("auto" and None: CUDA if available, else the CPU); not checked to exist."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise DiffutronError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from error


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to run on; one this machine does not have is refused here, before any loading."""
    resolved = parse_device(device)
    _check_available(resolved)
    return resolved


def _check_available(device: torch.device) -> None:
    """torch accepts any well-formed device name; the failure would only come when moving the weights."""
    if device.type == "cpu":
        return
    if device.type == "meta":
        raise DiffutronError(
            "the meta device holds no weights, so no model can run on it: use cpu, cuda, cuda:N or auto"
        )
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    if accelerator is None or accelerator.type != device.type:
        found = f"its accelerator is {accelerator.type}" if accelerator else "torch sees no accelerator on it"
        raise DiffutronError(f"device {str(device)!r} is not available on this machine ({found}): use cpu or auto")
    count = torch.accelerator.device_count()
    if device.index is not None and device.index >= count:
        raise DiffutronError(
            f"device {str(device)!r} does not exist: this machine has {count} {device.type} device(s), "
            f"{device.type}:0 to {device.type}:{count - 1}"
        )


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
    if dtype is None or dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype not in DTYPES:
        shown = str(dtype).removeprefix("torch.")
        raise DiffutronError(
            f"unsupported dtype {shown!r}; choose one of: auto, {', '.join(DTYPES)}, {INT8} (CPU only)"
        )
    return DTYPES[dtype]


def load_checkpoint(
    name_or_path: str | Path | None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model (in eval mode, on `device`) and tokenizer; never runs code from the checkpoint."""
    quantize = dtype == INT8  # dynamic int8 Linear layers on float32 weights
    target = int8_device(device) if quantize else resolve_device(device)
    weights_dtype = resolve_dtype(torch.float32 if quantize else dtype, target)
    source = _resolve_source(name_or_path)
    tokenizer = load_tokenizer(source)
    try:
        model = AutoModelForMaskedLM.from_pretrained(
            source, dtype=weights_dtype, use_safetensors=True, trust_remote_code=False
        )
    except (OSError, ValueError, SafetensorError, StrictDataclassError) as error:
        raise DiffutronError(describe_load_failure(source, error)) from error
    model = model.to(target).eval()
    return (quantize_int8(model) if quantize else model), tokenizer


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """A tokenizer (local directory or hub id) that has the special tokens a masked diffusion LM needs."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise DiffutronError(describe_load_failure(str(name_or_path), error)) from error
    SpecialIds.from_tokenizer(tokenizer)
    return tokenizer


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
    text = str(name_or_path)
    if path.is_dir():
        _check_directory(path)
        return str(path)
    if path.exists():
        raise DiffutronError(
            f"{text!r} is a file, not a checkpoint directory: give the directory that holds config.json, "
            f"the tokenizer and the safetensors weights (perhaps {str(path.parent)!r})"
        )
    if is_local_path(text):
        raise DiffutronError(f"model directory {text!r} does not exist (looked for {path.absolute()})")
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
    _check_weights_match_config(path)


def _check_weights_match_config(path: Path) -> None:
    """Read the config and the safetensors headers (no weights): a damaged or truncated file, or a
    config whose sizes are not those of the weights, is named here instead of deep inside loading."""
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError, StrictDataclassError) as error:
        raise DiffutronError(f"{path / 'config.json'} is not a valid model config: {_one_line(error)}") from None
    expected = _parameter_shapes(config)
    for file in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(file, "pt") as weights:
                stored = {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}
        except SafetensorError as error:
            raise DiffutronError(
                f"{file} is damaged or incomplete ({_one_line(error)}): download or copy it again"
            ) from None
        for key, shape in stored.items():
            if key in expected and expected[key] != shape:
                raise DiffutronError(
                    f"{path / 'config.json'} does not match the weights in {file.name}: {key} is "
                    f"{list(shape)} there but the config makes it {list(expected[key])}; use the "
                    "config.json saved with these weights"
                )


def _parameter_shapes(config: PreTrainedConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor shape the config implies, from a model built on the meta device (no memory)."""
    try:
        with torch.device("meta"):
            model = AutoModelForMaskedLM.from_config(config, trust_remote_code=False)
    except ValueError as error:
        raise DiffutronError(f"this config describes no masked language model: {_one_line(error)}") from None
    return {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}


def describe_load_failure(source: str, error: Exception) -> str:
    """Why a checkpoint or tokenizer did not load: a local directory, or a hub id and how to get it offline."""
    if Path(source).is_dir():
        return f"could not load the checkpoint in {source}: {_one_line(error)}"
    return (
        f"there is no local directory {source!r} and {source!r} could not be loaded from the "
        f"Hugging Face hub ({_one_line(error)}). If this machine is "
        f"offline, download it elsewhere first (`huggingface-cli download {source}`), copy the "
        "cache (HF_HOME) here and set HF_HUB_OFFLINE=1, or pass a local directory."
    )


def _one_line(error: Exception) -> str:
    """A library's multi-line error message, folded into the one line of ours."""
    return " ".join(str(error).split())
