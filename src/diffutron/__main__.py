"""`python -m diffutron ...` is the `diffutron` command (also under torchrun and accelerate launch)."""

from diffutron.cli import main

main()
