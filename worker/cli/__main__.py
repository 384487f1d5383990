"""``python -m vidgo_stems.cli``."""

from vidgo_stems.cli import main

main()
