"""Shared fixtures: real SWE-bench records from shared/fixtures and small synthetic instances."""

from __future__ import annotations

from pathlib import Path

import pytest

from daggerlm.config import AgentConfig, RuntimeConfig
from daggerlm.instances.synthetic import generate

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def swebench_sample() -> Path:
    path = SHARED_FIXTURES / "swebench_verified_sample.jsonl"
    assert path.is_file(), f"missing {path}: the shared fixtures must sit beside the repository"
    return path


@pytest.fixture(scope="session")
def eval_instances():
    return generate(8, "eval", seed=11)


@pytest.fixture()
def runtime(tmp_path) -> RuntimeConfig:
    return RuntimeConfig(timeout_s=5, workdir=str(tmp_path))


@pytest.fixture()
def agent_config() -> AgentConfig:
    return AgentConfig()
