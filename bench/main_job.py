"""The main job as a new user runs it: a clean clone of this repository, setup's student build
(`daggerlm build-student`) timed, then `python -m flows.dagger` timed, then what it left: the
per-iteration table, `dvc status`, and a second `dvc repro` that must have nothing to do. JSON out
(default `bench/results/main_job.json`).

    .venv/bin/python bench/main_job.py              # ~6 min on 2 cores, plus ~8 for the student build

The clone reuses this checkout's `.venv` (pip installs are not measured) and commits nothing. A
finished student build in this checkout (`./setup.sh`) is copied into the clone; build-student
reuses it only if its recipe is the clone's (else it builds: `build_student_s` says which).
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


def sh(args: list[str], cwd: Path, env: dict, timeout: float = 3600) -> tuple[int, str]:
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "main_job.json")
    a = ap.parse_args()
    venv_bin = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="daggerlm-main-job-") as tmp:
        clone = Path(tmp) / "daggerlm"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(clone),
               "DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        student = Path("models") / "tiny-student"  # params.yaml: student.model
        if (REPO / student).is_dir():
            shutil.copytree(REPO / student, clone / student)
        start = time.monotonic()
        code, log = sh([sys.executable, "-m", "daggerlm.cli", "build-student"], clone, env)
        if code != 0:
            sys.exit(f"build-student failed (exit {code}):\n{log[-3000:]}")
        build_s, reused = time.monotonic() - start, "reused" in log
        start = time.monotonic()
        code, log = sh([sys.executable, "-m", "flows.dagger"], clone, env)
        seconds = time.monotonic() - start
        if code != 0:
            sys.exit(f"main job failed (exit {code}):\n{log[-3000:]}")
        rows = json.loads((clone / "data" / "report" / "iterations.json").read_text())
        _, status = sh(["dvc", "status"], clone, env)
        start = time.monotonic()
        _, repro = sh(["dvc", "repro"], clone, env)
        result = {
            "bench": "main_job", "machine": platform.platform(), "cpus": os.cpu_count(),
            "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                     text=True).stdout.strip(),
            "build_student_s": round(build_s, 1), "student_build_reused": reused,
            "main_job_s": round(seconds, 1), "iterations": rows,
            "last_resolve_rate": rows[-1]["resolve_rate"],
            "dvc_status_clean": "Data and pipelines are up to date" in status,
            "second_repro_ran_a_stage": "Running stage" in repro, "second_repro_s": round(time.monotonic() - start, 1),
        }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "iterations"}, indent=2))


if __name__ == "__main__":
    main()
