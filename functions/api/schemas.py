"""Pydantic models describing request and response bodies in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every 4xx/5xx body."""

    error: str = Field(description="What is wrong, naming the instance or field")
    code: str = Field(description="Machine-readable error code")
    instance: int | None = Field(default=None, description="Index of the offending instance, when there is one")


class PredictRequest(BaseModel):
    """Natural instances: feature dicts or arrays (tabular), 8x8 arrays (images), strings (text)."""

    instances: list[Any] = Field(min_length=1, description="1 to MAAS_MAX_INSTANCES instances")


class PredictResponse(BaseModel):
    model: str
    version: str
    variant: str
    predictions: list[dict[str, Any]] = Field(
        description="Classifiers: {label, probabilities}; regressors: {value}")


class ModelSummary(BaseModel):
    name: str
    versions: list[str]
    aliases: dict[str, str]


class ModelList(BaseModel):
    models: list[ModelSummary]
    stale: bool = Field(default=False, description=(
        "The listing's TTL (MAAS_ALIAS_TTL_SECONDS) has run out: this is the last listing read, answered while "
        "the store is re-read in the background (or cannot be reached)"))


class ModelDetail(BaseModel):
    name: str
    versions: list[str]
    aliases: dict[str, str]
    default_version: str
    task: str
    description: str
    labels: list[str] | None
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    preprocessing: dict[str, Any]
    variant: str
    metrics: dict[str, Any] | None


class OipTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class OipInferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[OipTensor]
    outputs: list[dict[str, Any]] | None = None


class OipInferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OipTensor]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON or invalid UTF-8"},
    404: {"model": ErrorBody, "description": "Unknown model, version or alias"},
    413: {"model": ErrorBody, "description": "Body larger than MAAS_MAX_BODY_BYTES"},
    415: {"model": ErrorBody, "description": "Content type is not application/json"},
    422: {"model": ErrorBody, "description": "Instances that do not match the model's schema"},
    503: {"model": ErrorBody, "description": "The model cannot be loaded (integrity failure, unreadable artifact)"},
}
