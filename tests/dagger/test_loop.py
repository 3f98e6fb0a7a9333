"""The whole loop, tiny: every stage of two iterations, the table, the params each stage reads, and
bad params."""

import dataclasses
import json
import subprocess
import sys

import pandas as pd
import pytest

from daggerlm.config import record_reads
from daggerlm.dagger import loop, pipeline
from daggerlm.dagger.loop import run_dagger
from daggerlm.dagger.stages import checkpoint, stage_rollout
from daggerlm.errors import InputError
from daggerlm.report.table import COLUMNS
from tests.conftest import REPO, tiny_params


def undeclared(stage: pipeline.Stage, reads: set[str]) -> set[str]:
    """Params the stage read that its declaration does not cover (`data` is in dvc.yaml's paths; stage
    `params` depends on params.yaml itself, so on every key)."""
    if stage.name == "params":
        return set()
    declared = (*stage.reads, *stage.unaffected)
    return {r for r in reads if r != "data" and not any(r == d or r.startswith(d + ".") for d in declared)}


def run_recording_reads(p, monkeypatch) -> tuple[list[dict], dict[str, set[str]]]:
    """`daggerlm run` on `p`, recording the params each stage itself reads: (table rows, reads by stage)."""
    reads: dict[str, set[str]] = {}

    def recorded(params, name, k=None, runner=None):
        stage = pipeline.stage(name)
        with record_reads(params) as seen:  # what the stage itself reads
            result = stage.run(params) if k is None else stage.run(params, k)
        reads.setdefault(name, set()).update(seen)
        return result

    monkeypatch.setattr(loop, "run_stage", recorded)
    return run_dagger(p, log=lambda msg: None), reads


def test_two_iterations_end_to_end_and_every_param_read_is_declared(tmp_path, monkeypatch):
    rows, reads = run_recording_reads(tiny_params(tmp_path), monkeypatch)
    assert set(reads) == set(pipeline.BY_NAME)
    for name, seen in reads.items():
        assert not undeclared(pipeline.BY_NAME[name], seen), f"{name} reads {undeclared(pipeline.BY_NAME[name], seen)}"
    # the check bites: take one param the rollout stage read out of its declaration
    rollout = pipeline.BY_NAME["rollout"]
    narrower = dataclasses.replace(rollout, reads=tuple(r for r in rollout.reads if r != "dagger.beta"))
    assert undeclared(narrower, reads["rollout"]) == {"dagger.beta"}
    assert [r["iteration"] for r in rows] == [0, 1] and [r["beta"] for r in rows] == [1.0, 0.8]
    assert all(set(COLUMNS) <= set(r) for r in rows)
    for r in rows:
        assert 0 < r["calls_per_state"] <= 1.0
        assert r["train_loss_after"] < r["train_loss_before"]
    assert rows[0]["cache_hits"] == 0 and rows[1]["cache_hits"] >= 4  # first states repeat every iteration
    assert rows[1]["labels_total"] == rows[0]["labels_total"] + rows[1]["labels_new"]
    data = tmp_path / "data"
    assert json.loads((data / "report" / "iterations.json").read_text()) == rows
    summary = (data / "report" / "summary.md").read_text().splitlines()
    base = json.loads((data / "eval" / "base" / "metrics.json").read_text())
    assert len(summary) == 5 and summary[2].startswith(f"| base | – | – | {base['resolve_rate']:.3f} |")
    assert json.loads((data / "report" / "summary.json").read_text())["base"]["resolve_rate"] == base["resolve_rate"]
    meta = json.loads((data / "checkpoints" / "iter_2" / "daggerlm_checkpoint.json").read_text())
    agg = json.loads((data / "aggregated" / "iter_1" / "stats.json").read_text())
    assert meta["aggregate_hash"] == agg["hash"] and meta["examples"] + meta["dropped_too_long"] == agg["examples"]
    metrics = json.loads((data / "eval" / "iter_1" / "metrics.json").read_text())
    assert metrics["n_instances"] == 2 and metrics["resolve_rate"] == rows[1]["resolve_rate"]


def test_an_hf_teacher_labels_and_distils_through_the_same_loop(tmp_path, monkeypatch):
    """On-policy distillation (student prefix, α-mixed KL to the teacher's full distribution, DistIL's
    future term) is a config of the same pipeline; the teacher is the base model, in the process."""
    base = tmp_path / "data" / "checkpoints" / "iter_0"
    p = tiny_params(tmp_path, **{"dagger.iterations": 1, "dagger.beta": {"kind": "constant", "value": 0.5},
                                 "teacher.kind": "hf", "teacher.model": str(base),
                                 "teacher.sampling": {"temperature": 0.0, "max_new_tokens": 32},
                                 "train.objective": {"prefix": "student", "targets": "full", "alpha": 0.5,
                                                     "gamma": 0.5}})
    rows, reads = run_recording_reads(p, monkeypatch)
    for name, seen in reads.items():
        assert not undeclared(pipeline.BY_NAME[name], seen), f"{name} reads {undeclared(pipeline.BY_NAME[name], seen)}"
    labels = pd.read_parquet(tmp_path / "data" / "labels" / "iter_0" / "labels.parquet")
    assert labels.teacher.str.startswith(f"hf:{base}").all()
    meta = json.loads((tmp_path / "data" / "checkpoints" / "iter_1" / "daggerlm_checkpoint.json").read_text())
    aggregated = pd.read_parquet(tmp_path / "data" / "aggregated" / "iter_0" / "train.parquet")
    assert meta["examples"] + meta["dropped_too_long"] == aggregated.student_response.notna().sum() > 0
    assert meta["objective_stats"]["forward_kl"] >= 0 and meta["objective_stats"]["entropy"] > 0
    assert meta["config"]["objective"]["gamma"] == 0.5 and len(rows) == 1


def test_missing_checkpoint_names_its_path(tmp_path):
    p = tiny_params(tmp_path)
    with pytest.raises(InputError, match=rf"{tmp_path / 'data' / 'checkpoints' / 'iter_1'}: checkpoint not found"):
        checkpoint(p, 1)
    with pytest.raises(InputError, match=r"checkpoints/iter_0: checkpoint not found"):
        stage_rollout(p, 0)


@pytest.mark.parametrize("override, message", [
    ("dagger.beta.value=1.5", "params.yaml: dagger.beta.value: Input should be less than or equal to 1 (got 1.5)"),
    ("dagger.betta=0.5", "params.yaml: unknown key 'dagger.betta'; allowed: beta, concurrency, "
                         "episodes_per_iteration, executor, iterations, label_cache, labels_per_iteration, "
                         "max_failed_share, rollin_turns"),
    ("dagger.beta.kind=cosine", "params.yaml: dagger.beta.kind: Input should be 'constant', 'linear', 'exponential' "
                                "or 'floored_linear' (got 'cosine')"),
])
def test_bad_params_one_line(override, message):
    r = subprocess.run([sys.executable, "-m", "daggerlm.cli", "run", "--set", override], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: {message}"]


def test_shipped_params_load():
    from daggerlm.config import load_params

    p = load_params(REPO / "params.yaml")
    assert p.dagger.beta.beta(0) == 1.0 and p.train.sft["gradient_checkpointing"] is False


def test_iterations_set_rewrites_params_keeping_comments_and_regenerates_dvc_yaml(tmp_path):
    import yaml

    from daggerlm.config import load_params

    target, dvc_file = tmp_path / "params.yaml", tmp_path / "dvc.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    r = subprocess.run([sys.executable, "-m", "daggerlm.cli", "iterations", "set", "4", "--params", str(target),
                        "--dvc-file", str(dvc_file)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert load_params(target).dagger.iterations == 4
    assert target.read_text().startswith("# daggerlm parameters")
    stages = yaml.safe_load(dvc_file.read_text())["stages"]
    assert list(stages["rollout"]["foreach"]) == ["0", "1", "2", "3"]
    assert stages["aggregate"]["foreach"]["3"]["deps1"] == "data/aggregated/iter_2"
    assert stages["train"]["foreach"]["3"]["outs0"] == "data/checkpoints/iter_4"


def test_terminal_table_shows_served_teacher_and_distillation_columns_only_when_filled():
    from daggerlm.report.table import SOMETIMES, markdown_table, shown_columns

    oracle_rows = [{**{c: 0 for c in COLUMNS}, "forward_kl": None, "reverse_kl": None, "entropy": None}]
    assert not set(SOMETIMES) & set(shown_columns(oracle_rows))
    served = [{**oracle_rows[0], "teacher_tokens": 1200, "teacher_cost_usd": 0.01}]
    assert {"teacher_tokens", "teacher_cost_usd"} <= set(shown_columns(served))
    assert "failed" not in shown_columns(served)
    distilled = [{**oracle_rows[0], "forward_kl": 0.5, "reverse_kl": 0.25, "entropy": 1.5}, oracle_rows[0]]
    assert {"forward_kl", "reverse_kl", "entropy"} <= set(shown_columns(distilled))
    table = markdown_table(distilled)
    assert "| 0.500 | 0.250 | 1.500 |" in table and "| – | – | – |" in table
