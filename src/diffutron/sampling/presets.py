"""Speed presets: `exact`, `fast`, `fastest` (docs/fast-generation.md has the measured trade-offs).

A preset is a set of sampler options plus the precision the model is loaded in on a CPU.
`exact` changes nothing: its output is token-for-token the model card sampler's. The others
combine parallel decoding, a block cache and a lower CPU precision, with defaults chosen from
the measurements in benchmarks/bench_fast_generation.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffutron.errors import DiffutronError
from diffutron.sampling.config import GenerationConfig, settings


@dataclass(frozen=True)
class SpeedPreset:
    sampler: dict[str, Any] = field(default_factory=dict)  # GenerationConfig fields
    cpu_dtype: str | None = None  # precision on a CPU; None keeps the loading default


PRESETS: dict[str, SpeedPreset] = {
    "exact": SpeedPreset(),
    "fast": SpeedPreset({"threshold": 0.9, "cache": "dual"}, cpu_dtype="bfloat16"),
    "fastest": SpeedPreset({"threshold": 0.7, "cache": "dual"}, cpu_dtype="int8"),
}
SPEEDS = tuple(PRESETS)


def speed_preset(speed: str) -> SpeedPreset:
    if speed not in PRESETS:
        raise DiffutronError(f"unknown speed {speed!r}; choose one of: {', '.join(SPEEDS)}")
    return PRESETS[speed]


def speed_config(speed: str = "exact", base: GenerationConfig | None = None, **changes: Any) -> GenerationConfig:
    """`base` (default: the model card's settings) with the preset's sampler options and `changes`.

    Explicit `changes` win; naming a rule or giving a rule's knob (`threshold=`, `factor=`) replaces
    the preset's rule and its knobs.
    """
    options = dict(speed_preset(speed).sampler)
    rule_fields = {"rule", *(name for name, setting in settings().items() if setting.rule is not None)}
    if any(changes.get(name) is not None for name in rule_fields):
        options = {name: value for name, value in options.items() if name not in rule_fields}
    return (base or GenerationConfig()).replace(**{**options, **changes})


def speed_dtype(speed: str, device: str | None) -> str:
    """The dtype to load with for `speed` on `device` ("auto" leaves the loader's default).

    The lower precisions are CPU modes: bfloat16 only where the CPU computes it natively
    (otherwise float32), int8 through dynamic quantization. Accelerators keep "auto".
    """
    from diffutron.model.loading import parse_device
    from diffutron.model.precision import cpu_bfloat16_supported

    dtype = speed_preset(speed).cpu_dtype
    if dtype is None or parse_device(device).type != "cpu":
        return "auto"
    if dtype == "bfloat16" and not cpu_bfloat16_supported():
        return "float32"
    return dtype
