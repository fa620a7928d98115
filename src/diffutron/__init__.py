"""Diffutron: Turkish masked diffusion language models (generate, train, evaluate).

The public names are imported on first use, so that `diffutron --help` and light modules
do not pay for importing torch and transformers.
"""

from importlib import import_module
from typing import Any

__all__ = ["Diffutron", "DiffutronError", "GenerationConfig", "sample"]
__version__ = "0.1.0"

_HOMES = {
    "Diffutron": "diffutron.lm",
    "DiffutronError": "diffutron.errors",
    "GenerationConfig": "diffutron.sampling.config",
    "sample": "diffutron.sampling.sampler",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'diffutron' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
