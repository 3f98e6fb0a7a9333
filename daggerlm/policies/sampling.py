"""Sampling parameters of model policies (part of a policy's identity)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    temperature: float = Field(0.7, ge=0.0)
    """0 means greedy decoding."""
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    max_new_tokens: int = Field(64, ge=1)
