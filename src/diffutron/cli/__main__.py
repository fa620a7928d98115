"""`python -m diffutron.cli` (the former spelling of `python -m diffutron`)."""

from diffutron.cli import main

main()
