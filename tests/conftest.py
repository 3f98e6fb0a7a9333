"""Shared fixtures: real SWE-bench records from shared/fixtures and small synthetic instances."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

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


@pytest.fixture(scope="session")
def docker_runtime() -> RuntimeConfig:
    """The Docker runtime on the locally built base image (built once per machine, ~1 min)."""
    from daggerlm.runtime.docker import build_base_image

    build_base_image()
    return RuntimeConfig(kind="docker", memory_mb=512, pids_limit=128, timeout_s=20)


TOOLZ_N = 5


@pytest.fixture(scope="session")
def toolz_run(tmp_path_factory):
    """Five mutation instances of toolz (seed 3), validated by its own tests in the local runtime."""
    from daggerlm.instances.library_bugs import load_libraries, mutate_library

    root = tmp_path_factory.mktemp("toolz")
    runtime = RuntimeConfig(envs_dir=str(root / "envs"), workdir=str(root))
    lib = load_libraries()["toolz"]
    instances, report = mutate_library(lib, TOOLZ_N, seed=3, cache=root / "cache", runtime=runtime, workers=2)
    return lib, runtime, root, instances, report


@pytest.fixture()
def runtime(tmp_path) -> RuntimeConfig:
    return RuntimeConfig(timeout_s=5, workdir=str(tmp_path))


@pytest.fixture()
def agent_config() -> AgentConfig:
    return AgentConfig()


TINY = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
        "corpus_instances": 30, "corpus_episodes": 2}


def tiny_overrides(tmp_path: Path, **overrides) -> dict:
    """The params of a small but complete run that differ from the defaults, as {dotted key: value}."""
    base = {
        "data": str(tmp_path / "data"), "student.model": str(tmp_path / "data" / "checkpoints" / "iter_0"),
        "student.tiny": TINY, "student.sampling": {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 32},
        "instances.train": {"n": 4, "seed": 1}, "instances.eval": {"n": 2, "seed": 1},
        "dagger.label_cache": str(tmp_path / "label_cache"), "dagger.concurrency": 4,
        "train.sft": {"num_train_epochs": 2, "learning_rate": 0.003, "per_device_train_batch_size": 8,
                      "max_length": 2048, "logging_steps": 50, "disable_tqdm": True},
        "runtime.workdir": str(tmp_path), "agent.step_limit": 8, "evaluation.concurrency": 2,
    }
    return {**base, **overrides}


def tiny_params(tmp_path: Path, **overrides):
    """Params of a small but complete run: a tiny model, few instances, fast training."""
    from daggerlm.config import load_params

    return load_params(None, tiny_overrides(tmp_path, **overrides))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from daggerlm.dagger.stages import stage_init_model

    root = tmp_path_factory.mktemp("tiny")
    p = tiny_params(root)
    stage_init_model(p)
    return Path(p.student.model)


GYM_SAMPLE = Path(__file__).resolve().parent / "fixtures" / "swegym_sample.jsonl"
"""SWE-Gym-shaped records of five repositories (tests/fixtures)."""


@pytest.fixture()
def gym_hub(tmp_path, monkeypatch) -> str:
    """`datasets.load_dataset("SWE-Gym/SWE-Gym")` answered from a local copy of SWE-Gym's one split."""
    import datasets

    local = tmp_path / "hub"
    local.mkdir()
    (local / "train.jsonl").write_text(GYM_SAMPLE.read_text())
    real = datasets.load_dataset

    def load_dataset(name, *args, **kwargs):
        assert name == "SWE-Gym/SWE-Gym"
        return real(str(local), *args, cache_dir=str(tmp_path / "cache"), **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return "SWE-Gym/SWE-Gym"
