"""What one HTTP request's metering needs to learn on its way through: who asked, and what was served.

The API's consumer gate (``functions.consumers.gate``) sets a ``RequestFacts`` for each request it admits; the
prediction service fills in the model, version and rows it served; capture and metrics read the consumer. With no
gate (IAM or JWT stages), ``FACTS`` holds None and nothing here costs more than one lookup.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class RequestFacts:
    consumer: str
    model: str | None = None
    version: str | None = None
    rows: int = 0
    scope: tuple[str, ...] | None = None
    """the models the caller's key covers; None: every model"""


FACTS: ContextVar[RequestFacts | None] = ContextVar("maas_request_facts", default=None)


def served(model: str, version: str, rows: int) -> str | None:
    """Note what the current request served; its consumer (None outside a gated request)."""
    facts = FACTS.get()
    if facts is None:
        return None
    facts.model, facts.version = model, version
    facts.rows += rows
    return facts.consumer


def visible(model: str) -> bool:
    """Whether the current caller may see ``model`` in a listing (always, outside a gated request)."""
    facts = FACTS.get()
    return facts is None or facts.scope is None or model in facts.scope
