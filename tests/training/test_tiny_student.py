"""A finished tiny-student build is reused by the same recipe only (what ./setup.sh relies on)."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from daggerlm.cli import app
from tests.conftest import TINY


def _build(tmp_path, **tiny):
    model = tmp_path / "student"
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    args = ["build-student", "--params", str(tmp_path / "params.yaml"), "--set", f"student.model={model}",
            "--set", f"student.tiny={json.dumps({**TINY, 'corpus_episodes': 1, 'pretrain_steps': 2, **tiny})}",
            "--set", f"runtime.workdir={tmp_path}", "--set", "dagger.concurrency=1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return model, result.output


def test_same_recipe_reuses_the_build_and_another_rebuilds(tmp_path):
    model, first = _build(tmp_path)
    assert "reused" not in first and (model / "pretrain.json").is_file()
    weights = (model / "model.safetensors").stat().st_mtime_ns
    _, second = _build(tmp_path)
    assert "reused" in second and (model / "model.safetensors").stat().st_mtime_ns == weights
    _, third = _build(tmp_path, pretrain_steps=3)
    assert "reused" not in third and json.loads((model / "pretrain.json").read_text())["steps"] == 3


def test_an_unfinished_build_is_not_reused(tmp_path):
    model, _ = _build(tmp_path)
    meta = json.loads((model / "daggerlm_checkpoint.json").read_text())
    (model / "daggerlm_checkpoint.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "recipe"}))
    _, again = _build(tmp_path)
    assert "reused" not in again


def test_nothing_to_build_for_a_given_model(tmp_path):
    r = subprocess.run([sys.executable, "-m", "daggerlm.cli", "build-student", "--set", "student.build_tiny=false",
                        "--set", "student.model=org/model"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: student.build_tiny is false: student.model org/model is used as it is"]
