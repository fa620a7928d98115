"""Diffutron: Turkish masked diffusion language models (generate, train, evaluate)."""

from diffutron.errors import DiffutronError
from diffutron.lm import Diffutron
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.sampler import sample

__all__ = ["Diffutron", "DiffutronError", "GenerationConfig", "sample"]
__version__ = "0.1.0"
