"""``python -m maas``."""

from maas.cli import main

main()
