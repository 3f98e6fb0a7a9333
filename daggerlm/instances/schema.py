"""The instance record: SWE-bench's fields plus where a local runtime finds the repository."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

INSTANCE_FORMAT = "daggerlm.instance/1"
Source = Literal["synthetic", "mutation", "swebench", "swe-gym"]


class Instance(BaseModel):
    """One task instance in the SWE-bench schema.

    Unknown keys (e.g. SWE-bench's `hints_text`, NeMo-Gym's request params) are kept, not rejected,
    so third-party records round-trip.
    """

    model_config = ConfigDict(extra="allow")

    instance_id: str = Field(min_length=1)
    repo: str = Field(min_length=1)
    base_commit: str = Field(min_length=1)
    patch: str
    """Gold patch (a unified diff against `base_commit`)."""
    test_patch: str
    """Patch that adds or updates the tests; applied before grading, as in SWE-bench."""
    problem_statement: str = Field(min_length=1)
    FAIL_TO_PASS: list[str]
    PASS_TO_PASS: list[str]
    version: str = ""
    image: str | None = None
    eval_script: str | None = None
    log_parser: str | None = None
    eval_type: str | None = None
    """`image`, `eval_script`, `log_parser`, `eval_type`: what swebench's harness runs the record by."""
    source: Source = "swebench"
    repo_files: dict[str, str] | None = None
    """Inline repository snapshot at `base_commit` (small synthetic repositories)."""
    repo_snapshot: str | None = None
    """Path to a git repository that contains `base_commit` (local runtimes)."""
    environment: str | None = None
    """Name of the per-repository virtual environment (under `runtime.envs_dir`) whose python runs
    this instance's code locally; None: `runtime.python`."""
    format: str = INSTANCE_FORMAT

    @field_validator("FAIL_TO_PASS", "PASS_TO_PASS", mode="before")
    @classmethod
    def _decode_json_list(cls, value: object) -> object:
        """The Hugging Face hub stores these lists as JSON-encoded strings."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as e:
                raise ValueError(f"expected a list or a JSON-encoded list of test ids ({e.msg})") from None
        return value

    @property
    def runnable_locally(self) -> bool:
        return self.repo_files is not None or self.repo_snapshot is not None
