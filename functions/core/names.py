"""Validation of model, version and alias names before they ever touch a store key."""

from __future__ import annotations

import re

from functions.core.errors import InvalidNameError

_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
SHOWN_CHARS = 64


def shown(value: str) -> str:
    """``value`` as an error message may echo it: the first 64 characters, then "..." if there were more."""
    return value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "..."


def check_model_name(name: str) -> str:
    """Return `name` if it is a valid model name, else raise InvalidNameError."""
    if not _MODEL_NAME.fullmatch(name):
        raise InvalidNameError(f"invalid model name {shown(name)!r}: use 1-63 of a-z, 0-9, '-', '_'")
    return name


def check_version(version: str) -> str:
    """Return `version` if it is a valid version number (1, 2, ...), else raise InvalidNameError."""
    if not _VERSION.fullmatch(version):
        raise InvalidNameError(f"invalid version {shown(version)!r}: versions are positive integers")
    return version


def check_alias(alias: str) -> str:
    """Return `alias` if it is a valid alias name, else raise InvalidNameError."""
    if not _ALIAS.fullmatch(alias):
        raise InvalidNameError(f"invalid alias {shown(alias)!r}: use a letter then up to 31 of a-z, 0-9, '-', '_'")
    return alias


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def check_file_name(name: str) -> str:
    """Return ``name`` if it is a plain file name inside a version folder (no path, no '..', no NUL), else
    raise ValueError: manifests name their files, and those names become store keys and never leave the version."""
    if (not name or len(name) > 255 or name in (".", "..") or name.startswith(".")
            or any(c in name for c in "/\\\x00") or ":" in name):
        raise ValueError(f"{name!r} is not a plain file name")
    return name


def check_sha256(digest: str) -> str:
    """Return ``digest`` if it is 64 lower-case hex digits, else raise ValueError (digests name cache files)."""
    if not _HEX64.fullmatch(digest):
        raise ValueError(f"{digest[:80]!r} is not a sha256 (64 hex digits)")
    return digest
