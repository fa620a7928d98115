"""The masked-diffusion sampler and its settings."""
