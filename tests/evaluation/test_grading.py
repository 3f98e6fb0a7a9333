import json
import subprocess
import sys

import pytest

from swebench.harness.constants import FAIL_TO_PASS, PASS_TO_PASS

from daggerlm.evaluation import compute_metrics, evaluate, grade
from daggerlm.evaluation.grading import eval_script
from daggerlm.policies import make_policy
from daggerlm.config import AgentConfig
from daggerlm.policies.oracle import gold_fix
from tests.helpers import CountingPolicy


def _breaking_patch(inst):
    """The gold fix plus a change that breaks one PASS_TO_PASS test."""
    from daggerlm.instances.git import commit_files, diff_against

    p2p_fn = inst.PASS_TO_PASS[0].split("::test_")[1]
    files = dict(inst.repo_files)
    fix = gold_fix(inst.patch)
    lines = files[fix.file].splitlines(keepends=True)
    lines[fix.line - 1] = fix.new + "\n"
    files[fix.file] = "".join(lines)
    for path, text in files.items():
        if f"def {p2p_fn}(" in text and not path.startswith("tests/"):
            src = text.splitlines(keepends=True)
            i = next(k for k, line in enumerate(src) if line.startswith(f"def {p2p_fn}("))
            src[i + 1] = "    return None\n"
            files[path] = "".join(src)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        base = commit_files(Path(tmp), inst.repo_files)
        return diff_against(Path(tmp), base, files)


def test_gold_empty_and_breaking_patches(eval_instances, runtime):
    inst = eval_instances[3]
    gold = grade(inst, inst.patch, runtime)
    assert gold["resolved"] and gold["patch_successfully_applied"]
    assert gold["tests_status"][FAIL_TO_PASS]["success"] == inst.FAIL_TO_PASS
    assert gold["tests_status"][PASS_TO_PASS]["failure"] == []
    empty = grade(inst, "", runtime)
    assert not empty["resolved"] and empty["tests_status"][FAIL_TO_PASS]["failure"] == inst.FAIL_TO_PASS
    breaking = grade(inst, _breaking_patch(inst), runtime)
    assert not breaking["resolved"]
    assert breaking["tests_status"][FAIL_TO_PASS]["failure"] == []
    assert breaking["tests_status"][PASS_TO_PASS]["failure"] == [inst.PASS_TO_PASS[0]]


def test_every_gold_patch_resolves_and_the_bug_is_real(runtime):
    from daggerlm.instances.synthetic import generate

    for inst in generate(6, "train", seed=77):
        assert grade(inst, inst.patch, runtime)["resolved"], inst.instance_id
        assert not grade(inst, "", runtime)["resolved"], inst.instance_id


def test_hard_coding_the_visible_test_does_not_resolve(eval_instances, runtime):
    inst = eval_instances[4]
    fn = inst.FAIL_TO_PASS[0].split("::test_")[1]
    tampered = f"""diff --git a/{inst.FAIL_TO_PASS[0].split('::')[0]} b/{inst.FAIL_TO_PASS[0].split('::')[0]}
deleted file mode 100644
"""
    # deleting the failing test file is undone by the grader (test files are reset before the test patch)
    report = grade(inst, tampered + _deletion_body(inst), runtime)
    assert not report["resolved"], fn


def _deletion_body(inst):
    path = inst.FAIL_TO_PASS[0].split("::")[0]
    text = inst.repo_files[path]
    lines = text.splitlines()
    return f"--- a/{path}\n+++ /dev/null\n@@ -1,{len(lines)} +0,0 @@\n" + "".join(f"-{ln}\n" for ln in lines)


def test_unappliable_patch_is_not_resolved(eval_instances, runtime):
    report = grade(eval_instances[0], "diff --git a/nope.py b/nope.py\n--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-x\n+y\n",
                   runtime)
    assert not report["patch_successfully_applied"] and not report["resolved"]


def test_eval_script_resets_test_files_before_the_test_patch(eval_instances):
    inst = eval_instances[0]
    script = eval_script(inst)
    test_file = inst.FAIL_TO_PASS[0].split("::")[0]
    assert f"git checkout -q {inst.base_commit} -- \"$f\"" in script and test_file in script
    assert script.index("model.patch") < script.index("test.patch") < script.index("pytest -rA")


def test_evaluate_writes_predictions_metrics_and_resumes(eval_instances, runtime, tmp_path):
    out = tmp_path / "eval"
    items = eval_instances[:3]
    oracle = CountingPolicy(make_policy("oracle"))
    metrics = evaluate(items, oracle, out, runtime=runtime, agent=AgentConfig(), concurrency=2, model_name="oracle")
    assert metrics["resolve_rate"] == 1.0 and metrics["exit_statuses"] == {"Submitted": 3}
    assert metrics["mean_turns"] == 5 and metrics["format_error_rate"] == 0.0
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["instance_id"] for p in preds] == [i.instance_id for i in items]
    assert all(p["model_patch"] == i.patch for p, i in zip(preds, items))
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert oracle.requests == 15 and len(list((out / "results").glob("*.json"))) == 3
    assert len(list((out / "results" / ".timings").glob("*.json"))) == 3  # each episode's seconds, beside it
    # a re-run finds every result and runs nothing
    again = evaluate(items, oracle, out, runtime=runtime, agent=AgentConfig(), concurrency=2, model_name="oracle")
    assert again == metrics and oracle.requests == 15


def test_metrics_count_statuses_and_format_errors():
    def result(resolved, status, turns, errors):
        return {"trajectory": {"instance_id": "x", "policies": {}, "exit_status": status, "n_format_errors": errors,
                               "turns": [{"index": i, "prefix_len": 2, "snapshot": {}, "actor": "student",
                                          "response": "", "action": None} for i in range(turns)]},
                "report": {"resolved": resolved, "patch_successfully_applied": True}}

    m = compute_metrics([result(True, "Submitted", 5, 0), result(False, "LimitsExceeded", 10, 2),
                         result(False, "RepeatedFormatError", 3, 3)])
    assert m["resolve_rate"] == 1 / 3 and m["mean_turns"] == 6
    assert m["format_error_rate"] == 5 / 18
    assert m["exit_statuses"] == {"Submitted": 1, "LimitsExceeded": 1, "RepeatedFormatError": 1}


def test_verdict_agrees_with_official_swebench_reports(swebench_sample):
    """The official reports of five real rollouts: our verdict from their test statuses matches theirs."""
    from daggerlm.evaluation.grading import verdict
    from daggerlm.instances import load_instances

    instances = {i.instance_id: i for i in load_instances(swebench_sample)}
    rollouts = swebench_sample.parent / "swebench_verified_rollouts_qwen3_30b.jsonl"
    checked = 0
    for line in rollouts.read_text().splitlines():
        meta = json.loads(line)["metadata"]
        official = meta["eval_report"][meta["instance_id"]]
        status = {t: "PASSED" for k in (FAIL_TO_PASS, PASS_TO_PASS) for t in official["tests_status"][k]["success"]}
        status |= {t: "FAILED" for k in (FAIL_TO_PASS, PASS_TO_PASS) for t in official["tests_status"][k]["failure"]}
        resolved, tests = verdict(instances[meta["instance_id"]], status)
        assert resolved == official["resolved"], meta["instance_id"]
        for k in (FAIL_TO_PASS, PASS_TO_PASS):
            assert sorted(tests[k]["failure"]) == sorted(official["tests_status"][k]["failure"])
        checked += 1
    assert checked == 5


def test_grading_agrees_with_itself_and_the_cli(eval_instances, runtime, tmp_path):
    import subprocess
    import sys

    from daggerlm.instances import write_instances

    inst = eval_instances[5]
    first, second = grade(inst, inst.patch, runtime), grade(inst, inst.patch, runtime)
    assert first == second and first["resolved"]
    write_instances(tmp_path / "inst.jsonl", [inst])
    (tmp_path / "preds.jsonl").write_text(
        json.dumps({"instance_id": inst.instance_id, "model_name_or_path": "gold", "model_patch": inst.patch}) + "\n"
        + json.dumps({"instance_id": inst.instance_id, "model_name_or_path": "empty", "model_patch": ""}) + "\n")
    r = subprocess.run([sys.executable, "-m", "daggerlm.cli", "grade", "--instances", str(tmp_path / "inst.jsonl"),
                        "--predictions", str(tmp_path / "preds.jsonl"), "--out", str(tmp_path / "reports.jsonl")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    reports = [json.loads(line) for line in (tmp_path / "reports.jsonl").read_text().splitlines()]
    assert [x["resolved"] for x in reports] == [True, False]
    assert reports[0] == first


@pytest.mark.parametrize("content, message", [
    (None, "predictions file not found"),
    ('{"instance_id": "x", "model_patch": ""\n', ":1: malformed JSON"),
    ('["not", "an", "object"]\n', ":1: expected a JSON object with instance_id and model_patch"),
    ('{"instance_id": "INSTANCE"}\n', ":1: missing field or unknown instance 'model_patch'"),
    ('{"instance_id": "INSTANCE", "model_patch": 3}\n', ":1: model_patch must be a string (got int)"),
])
def test_grade_command_rejects_bad_predictions_in_one_line(tmp_path, eval_instances, content, message):
    from daggerlm.instances import write_instances

    instances = write_instances(tmp_path / "instances.jsonl", eval_instances[:1])
    predictions = tmp_path / "predictions.jsonl"
    if content is not None:
        predictions.write_text(content.replace("INSTANCE", eval_instances[0].instance_id))
    r = subprocess.run([sys.executable, "-m", "daggerlm.cli", "grade", "--instances", str(instances),
                        "--predictions", str(predictions), "--out", str(tmp_path / "reports.jsonl")],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {predictions}") and message in lines[0], r.stderr
    assert not (tmp_path / "reports.jsonl").exists()
