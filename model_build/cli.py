"""Kept for ``python -m model_build.cli``: the ``maas`` command line now lives in the ``maas`` package."""

from __future__ import annotations

from maas.cli import main as main

if __name__ == "__main__":
    main()
