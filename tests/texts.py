"""Text inputs for batch tests: a keyed CSV of random texts with some bad rows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def keyed_texts(path: Path, rows: int, words: Sequence[str], most_words: int, bad_every: int, bad_at: int,
                seed: int) -> Path:
    """A CSV ``key,text`` of ``rows`` texts of 1 to ``most_words - 1`` words drawn from ``words``; row ``i`` with
    ``i % bad_every == bad_at`` is bad (an empty text, or a ragged row)."""
    rng = np.random.default_rng(seed)
    lines = ["key,text"]
    for i in range(rows):
        if i % bad_every == bad_at:
            lines.append(f"k{i}," if i % 2 else f"k{i},two,cells")
        else:
            lines.append(f'k{i},"{" ".join(rng.choice(list(words), size=int(rng.integers(1, most_words))).tolist())}"')
    path.write_text("\n".join(lines) + "\n")
    return path
