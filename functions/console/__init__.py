"""The web console: static pages (plain HTML, CSS and ES modules) and the read-only data behind them."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
