"""Prefect retries a DVC stage only when a retry can help: after an infrastructure failure (exit 75),
never after bad input (exit 2); a stage DVC refuses says why in DVC's words. A real Prefect server (temporary, local) and a real DVC project."""

import json
import subprocess
import sys
import textwrap

from tests.conftest import REPO
from tests.pipeline.project import _run
from tests.pipeline.test_flow import PREFECT_ENV

STAGE = textwrap.dedent("""
    import pathlib, sys
    attempts = pathlib.Path(sys.argv[1] + ".attempts")
    n = int(attempts.read_text()) + 1 if attempts.exists() else 1
    attempts.write_text(str(n))
    if sys.argv[1] == "bad":
        print("error: params.yaml: dagger.beta.value: expected at most 1", file=sys.stderr)
        sys.exit(2)
    if n < 2:
        print("failed (retry may help): teacher server unreachable", file=sys.stderr)
        sys.exit(75)
    pathlib.Path("out.txt").write_text("done")
""")
FLOWS = textwrap.dedent("""
    import json, sys
    from prefect import flow
    from tasks.stages import dvc_stage

    @flow(retry_delay_seconds=0)
    def one(stage: str, project: str):
        return dvc_stage.with_options(retry_delay_seconds=1)(stage, project)

    outcome = {}
    for stage in ("flaky", "bad", "refused"):
        try:
            one(stage, sys.argv[1])
            outcome[stage] = "completed"
        except Exception as e:
            outcome[stage] = f"failed: {e}"
    print("OUTCOME " + json.dumps(outcome))
""")


def test_transient_failures_are_retried_bad_input_is_not(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "stage.py").write_text(STAGE)
    (project / "dvc.yaml").write_text(
        "stages:\n  flaky:\n    cmd: python stage.py flaky\n    outs: [out.txt]\n"
        "  bad:\n    cmd: python stage.py bad\n    outs: [bad.txt]\n"
        "  refused:\n    cmd: python stage.py refused\n    params: [teacher.endpoint.logprobs]\n    outs: [r.txt]\n")
    (project / "params.yaml").write_text("seed: 1\n")  # DVC refuses a stage whose declared param is absent
    env = {**PREFECT_ENV, "PATH": f"{sys.executable.rsplit('/', 1)[0]}:/usr/bin:/bin", "DVC_NO_ANALYTICS": "1",
           "PREFECT_HOME": str(tmp_path / "prefect"), "HOME": str(tmp_path), "GIT_CONFIG_GLOBAL": "/dev/null"}
    _run(["git", "init", "-q"], project, env)
    _run(["dvc", "init", "-q"], project, env)
    r = subprocess.run([sys.executable, "-c", FLOWS, str(project)], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=600)
    line = next((x for x in r.stdout.splitlines() if x.startswith("OUTCOME ")), None)
    assert line, r.stdout[-3000:] + r.stderr[-3000:]
    outcome = json.loads(line.removeprefix("OUTCOME "))
    assert outcome["flaky"] == "completed"
    assert (project / "flaky.attempts").read_text() == "2"  # exit 75 once, then retried and done
    assert outcome["bad"].startswith("failed: dvc repro bad failed (stage exit 2)")
    assert "dagger.beta.value" in outcome["bad"]
    assert (project / "bad.attempts").read_text() == "1"  # bad input: not retried
    # DVC refused the stage (its command never ran): the stage and DVC's own message, on one line
    assert outcome["refused"] == ("failed: dvc repro refused: DVC refused the stage: failed to reproduce 'refused': "
                                  "Parameters 'teacher.endpoint.logprobs' are missing from 'params.yaml'.")
    assert not (project / "refused.attempts").exists()
