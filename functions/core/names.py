"""Validation of model, version and alias names before they ever touch a store key."""

from __future__ import annotations

import re

from functions.core.errors import InvalidNameError

_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def check_model_name(name: str) -> str:
    """Return `name` if it is a valid model name, else raise InvalidNameError."""
    if not _MODEL_NAME.fullmatch(name):
        raise InvalidNameError(f"invalid model name {name!r}: use 1-63 of a-z, 0-9, '-', '_'")
    return name


def check_version(version: str) -> str:
    """Return `version` if it is a valid version number (1, 2, ...), else raise InvalidNameError."""
    if not _VERSION.fullmatch(version):
        raise InvalidNameError(f"invalid version {version!r}: versions are positive integers")
    return version


def check_alias(alias: str) -> str:
    """Return `alias` if it is a valid alias name, else raise InvalidNameError."""
    if not _ALIAS.fullmatch(alias):
        raise InvalidNameError(f"invalid alias {alias!r}: use a letter then up to 31 of a-z, 0-9, '-', '_'")
    return alias
