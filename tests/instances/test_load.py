import json
import subprocess
import sys

import pandas as pd
import pytest

from daggerlm.agent.scaffold import first_messages
from daggerlm.errors import InputError
from daggerlm.instances import load_instances, write_instances


def test_swebench_records_load_and_render(swebench_sample):
    items = load_instances(swebench_sample)
    assert [i.instance_id for i in items][:2] == ["django__django-10973", "pylint-dev__pylint-4551"]
    assert len(items) == 5
    for inst in items:
        system, task = first_messages(inst)
        assert system["role"] == "system" and "```bash" in system["content"]
        assert task["role"] == "user" and inst.problem_statement.strip()[:200] in task["content"]
        assert inst.FAIL_TO_PASS and all(isinstance(t, str) for t in inst.FAIL_TO_PASS)
        assert not inst.runnable_locally
    # unknown third-party keys survive a round trip
    assert "hints_text" in items[0].model_dump()


def test_fail_to_pass_as_json_string_or_list(swebench_sample, tmp_path):
    rows = [json.loads(line) for line in swebench_sample.read_text().splitlines()]
    for r in rows:
        r["FAIL_TO_PASS"] = json.dumps(r["FAIL_TO_PASS"])
        r["PASS_TO_PASS"] = json.dumps(r["PASS_TO_PASS"])
    path = tmp_path / "hub_style.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [i.FAIL_TO_PASS for i in load_instances(path)] == [i.FAIL_TO_PASS for i in load_instances(swebench_sample)]


def test_parquet(swebench_sample, tmp_path):
    rows = [json.loads(line) for line in swebench_sample.read_text().splitlines()]
    path = tmp_path / "instances.parquet"
    pd.DataFrame([{k: r[k] for k in ("instance_id", "repo", "base_commit", "patch", "test_patch",
                                     "problem_statement", "FAIL_TO_PASS", "PASS_TO_PASS", "version")} for r in rows]
                 ).to_parquet(path)
    items = load_instances(path)
    assert [i.instance_id for i in items] == [r["instance_id"] for r in rows]
    assert items[0].FAIL_TO_PASS == rows[0]["FAIL_TO_PASS"]


def test_malformed_line_names_file_and_line(swebench_sample, tmp_path):
    lines = swebench_sample.read_text().splitlines()
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([lines[0], lines[1][:-10], lines[2]]) + "\n")
    with pytest.raises(InputError, match=rf"^{path}:2: malformed JSON"):
        load_instances(path)


def test_missing_field_names_file_line_and_field(swebench_sample, tmp_path):
    rows = [json.loads(line) for line in swebench_sample.read_text().splitlines()]
    del rows[3]["base_commit"]
    path = tmp_path / "missing.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError) as err:
        load_instances(path)
    assert str(err.value) == f"{path}:4: field 'base_commit': missing required field"


def test_cli_bad_input_is_one_line_and_nonzero(swebench_sample, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(swebench_sample.read_text().splitlines()[0] + "\n{not json\n")
    r = subprocess.run([sys.executable, "-m", "daggerlm.cli", "instances", "validate", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {path}:2: malformed JSON (Expecting property name enclosed "
                                             "in double quotes at column 2)"]


def test_write_is_atomic(eval_instances, tmp_path):
    target = tmp_path / "out.jsonl"
    write_instances(target, eval_instances[:2])
    before = target.read_bytes()

    def broken():
        yield eval_instances[0]
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        write_instances(target, broken())
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temporary left behind
    assert [i.instance_id for i in load_instances(target)] == [i.instance_id for i in eval_instances[:2]]


def test_a_snapshot_relative_to_the_working_directory_is_written_relative_to_the_file(eval_instances, tmp_path,
                                                                                     monkeypatch):
    """A mutation cache is relative by default (`.daggerlm/libraries`): its instances name their
    snapshot relative to the working directory, and the instances stage writes them under data/."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".daggerlm" / "libraries" / "lib" / "repo").mkdir(parents=True)
    inst = eval_instances[0].model_copy(update={"repo_snapshot": ".daggerlm/libraries/lib/repo", "repo_files": None})
    target = write_instances("data/instances/train.jsonl", [inst])
    assert json.loads(target.read_text())["repo_snapshot"] == "../../.daggerlm/libraries/lib/repo"
    [loaded] = load_instances(target)
    assert loaded.repo_snapshot == str(tmp_path / ".daggerlm" / "libraries" / "lib" / "repo")
