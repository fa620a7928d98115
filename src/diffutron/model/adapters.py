"""LoRA adapters by name on one loaded model (peft's multi-adapter model), one of them active at a time.

`diffutron train` writes an adapter directory (adapter_config.json and adapter_model.safetensors);
`Adapters` loads several onto the same base, injected into its layers in place, and `active(name)`
runs code with that adapter on (None: the base model alone). The weights are read from safetensors
only, and an adapter whose tensors do not fit the base's layers is refused before it is used.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import nn

from diffutron.errors import DiffutronError
from diffutron.files import file_damage, read_json_object

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")


class AdapterMismatch(DiffutronError):
    """An adapter whose tensors do not fit the layers of the model it is loaded onto."""


def read_adapter(adapter_dir: Path) -> dict[str, Any]:
    """The adapter's config, after checking that its config and whole safetensors weights are there."""
    config_path, weights = adapter_dir / ADAPTER_CONFIG, adapter_dir / ADAPTER_WEIGHTS
    if not config_path.is_file():
        raise DiffutronError(f"{adapter_dir} is not a LoRA adapter directory (no {ADAPTER_CONFIG})")
    config = read_json_object(config_path)
    if not weights.is_file():
        raise DiffutronError(
            f"{adapter_dir} holds {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}: the adapter's weights are missing"
        )
    problem = file_damage(weights)
    if problem is not None:
        raise DiffutronError(problem)
    return config


def attach_adapter(model: nn.Module, adapter_dir: Path, name: str, base: str) -> nn.Module:
    """`model` (a plain model, or a peft model already holding other adapters) with the adapter at
    `adapter_dir` (checked by `read_adapter`) loaded as `name`; `AdapterMismatch` names what does not
    fit the base `base`."""
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors import safe_open

    wrong_base = f"the adapter {adapter_dir} does not fit the base model {base}"
    try:
        if isinstance(model, PeftModel):
            model.load_adapter(adapter_dir, adapter_name=name)
            adapted = model
        else:
            adapted = PeftModel.from_pretrained(model, adapter_dir, adapter_name=name)
    except (RuntimeError, ValueError, KeyError) as error:  # size mismatch, no target module found
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        reason = next((line for line in lines if line.startswith("size mismatch")), lines[0])
        raise AdapterMismatch(f"{wrong_base} ({reason})") from None
    with safe_open(str(adapter_dir / ADAPTER_WEIGHTS), framework="pt") as handle:
        saved = set(handle.keys())
    expected = set(get_peft_model_state_dict(adapted, adapter_name=name))
    unused, missing = sorted(saved - expected), sorted(expected - saved)
    if unused or missing:
        details = [
            f"{len(unused)} adapter tensor(s) have no layer in the base (e.g. {unused[0]})" if unused else "",
            f"{len(missing)} adapted layer(s) of the base lack adapter tensors (e.g. {missing[0]})" if missing else "",
        ]
        raise AdapterMismatch(f"{wrong_base}: {'; '.join(filter(None, details))}")
    return adapted


def parse_lora_option(spec: str) -> tuple[str, Path]:
    """`NAME=PATH` of `diffutron serve --lora` as (name, path)."""
    name, sign, path = spec.partition("=")
    if not sign or not name or not path:
        raise DiffutronError(f"--lora takes NAME=PATH (an adapter directory written by diffutron train), got {spec!r}")
    check_adapter_name(name)
    return name, Path(path).expanduser()


def check_adapter_name(name: str) -> None:
    if not ADAPTER_NAME.match(name):
        raise DiffutronError(
            f"adapter name {name!r} must start with a letter or digit and hold only letters, digits and . _ : / -"
        )


class Adapters:
    """Named LoRA adapters loaded onto one model; the layers they adapt are the model's own, so the
    model itself runs with whichever adapter is active: none, outside an `active(name)` block."""

    def __init__(self, model: nn.Module, base: str) -> None:
        self.base = base  # the base model's name, for errors
        self.model = model  # the plain model until the first adapter, then peft's wrapper of it
        self.names: tuple[str, ...] = ()

    def load(self, name: str, adapter_dir: str | Path) -> None:
        """Load the adapter at `adapter_dir` as `name` (refused if the name is taken or it does not fit)."""
        check_adapter_name(name)
        if name in self.names:
            raise DiffutronError(f"an adapter named {name!r} is loaded already: give each adapter its own name")
        read_adapter(Path(adapter_dir))
        self.model = attach_adapter(self.model, Path(adapter_dir), name, self.base)
        self.names = (*self.names, name)
        self.model.base_model.disable_adapter_layers()  # off until asked for

    def check(self, name: str) -> None:
        if name not in self.names:
            loaded = ", ".join(self.names) or "none"
            raise DiffutronError(f"no adapter named {name!r} is loaded (loaded: {loaded})")

    @contextlib.contextmanager
    def active(self, name: str | None) -> Iterator[None]:
        """Run the block with adapter `name` on, or with none (None): the base model's own outputs."""
        if name is None:
            yield
            return
        self.check(name)
        self.model.set_adapter(name, inference_mode=True)
        self.model.base_model.enable_adapter_layers()
        try:
            yield
        finally:
            self.model.base_model.disable_adapter_layers()
