"""The main job as a new user runs it: a clean clone of this repository, the tiny student's build
timed (`./setup.sh` with `--setup`: the README's command 1 in all, a venv of the clone's own), then
`python -m flows.dagger` timed, then what it left: the per-iteration table, `dvc status`, and a
second `dvc repro` that must have nothing to do. JSON out (default `bench/results/main_job.json`).

    .venv/bin/python bench/main_job.py --setup      # README command 1 from a clean clone, pip installs included
    .venv/bin/python bench/main_job.py              # this checkout's .venv; the student built in the clone

The clone is of HEAD (commit first) and commits nothing. `--reuse-student` copies this checkout's
built student into the clone (build-student reuses it only if its recipe is the clone's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDENT = Path("models") / "tiny-student"  # params.yaml: student.model


def sh(args: list[str], cwd: Path, env: dict, timeout: float = 3600) -> tuple[int, str]:
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def clone(dest: Path) -> Path:
    """A clean clone of this repository's HEAD at `dest`."""
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    return dest


def checked(step: str, result: tuple[int, str]) -> str:
    code, log = result
    if code != 0:
        sys.exit(f"{step} failed (exit {code}):\n{log[-3000:]}")
    return log


def main_job(project: Path, *, setup: bool = False, reuse_student: bool = False, overrides: list[str] = ()) -> dict:
    """README command 1 in the clone `project` (`overrides`: the flow's --set pairs), timed, and what it left."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env = {k: v for k, v in env.items() if not k.startswith(("PREFECT_API", "PREFECT_HOME", "VIRTUAL_ENV"))}
    sets = [arg for pair in overrides for arg in ("--set", pair)]
    if reuse_student and (REPO / STUDENT).is_dir():
        shutil.copytree(REPO / STUDENT, project / STUDENT)
    start = time.monotonic()
    if setup:  # its own venv: the editable install is the clone's
        python = project / ".venv" / "bin" / "python"
        log = checked("./setup.sh", sh(["./setup.sh"], project, env))
    else:
        python = Path(sys.executable)
        env["PYTHONPATH"] = str(project)
        log = checked("build-student", sh([str(python), "-m", "daggerlm.cli", "build-student", *sets], project, env))
    build_s = time.monotonic() - start
    env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"
    start = time.monotonic()
    checked("main job", sh([str(python), "-m", "flows.dagger", *sets], project, env))
    seconds = time.monotonic() - start
    report = project / "data" / "report"
    rows = json.loads((report / "iterations.json").read_text())
    _, status = sh(["dvc", "status"], project, env)
    start = time.monotonic()
    _, repro = sh(["dvc", "repro"], project, env)
    return {
        **({"setup_s": round(build_s, 1)} if setup else {"build_student_s": round(build_s, 1),
                                                          "student_build_reused": "reused" in log}),
        "main_job_s": round(seconds, 1), **({"readme_command_1_s": round(build_s + seconds, 1)} if setup else {}),
        "base": json.loads((report / "summary.json").read_text())["base"], "iterations": rows,
        "table": (report / "summary.md").read_text(), "last_resolve_rate": rows[-1]["resolve_rate"],
        "dvc_status_clean": "Data and pipelines are up to date" in status,
        "second_repro_ran_a_stage": "Running stage" in repro, "second_repro_s": round(time.monotonic() - start, 1),
    }


def provenance(bench: str) -> dict:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return {"bench": bench, "machine": platform.platform(), "cpus": os.cpu_count(), "commit": commit}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", action="store_true", help="run ./setup.sh in the clone (its own venv), timed")
    ap.add_argument("--reuse-student", action="store_true", help="copy this checkout's built student into the clone")
    ap.add_argument("--keep-student", action="store_true", help="copy the clone's built student here when none is")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "main_job.json")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="daggerlm-main-job-") as tmp:
        project = clone(Path(tmp) / "daggerlm")
        result = {**provenance("main_job"), **main_job(project, setup=a.setup, reuse_student=a.reuse_student)}
        if a.keep_student and not (REPO / STUDENT).exists():
            shutil.copytree(project / STUDENT, REPO / STUDENT)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(result["table"])
    print(json.dumps({k: v for k, v in result.items() if k not in ("iterations", "table")}, indent=2))


if __name__ == "__main__":
    main()
