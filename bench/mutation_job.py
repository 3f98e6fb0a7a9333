"""The main job on a user's data: mutation instances of real libraries as both splits, a saved model
directory as the student fine-tuned with LoRA, the oracle teacher over HTTP. JSON out (default
`bench/results/mutation_job.json`): the per-iteration table, timings, `dvc status`, a second repro.

    .venv/bin/python bench/mutation_job.py                        # ~15 min on 2 cores
    .venv/bin/python bench/mutation_job.py --out /tmp/mj          # keep the project to look at

What it does, as a user would in their own copy of this repository:
1. `git clone` this repository (plus this checkout's uncommitted changes, listed in the JSON) into a
   throwaway project, and put a student there, made outside the pipeline: a copy of
   `models/tiny-student` (setup's 2M pretrained student) if this checkout has one, else the tiny
   Qwen2 model of `tests/user_model.py` (Qwen's chat template).
2. params.yaml: `instances.train` / `instances.eval` `{source: mutation, libraries: [...], n}`,
   `student: {model: ./models/student, build_tiny: false}`, `train.mode: lora` (4 epochs at 1e-3),
   `runtime.kind: auto`, the teacher `kind: openai` at the oracle server, with an API key it requires
   (the key must end up in no file of the project); then `daggerlm pipeline write`.
3. `dvc repro instances` (the oracle server, being privileged, loads the instances it labels), then
   `python -m daggerlm.serving.oracle_server --instances data/instances/train.jsonl`, then the main
   job `python -m flows.dagger` (every stage through DVC; instances is up to date and skipped).
4. `dvc status` must be clean and a second `dvc repro` must run nothing.

The project reuses this checkout's `.venv`; the libraries' sources and environments are fetched and
built in the project (`.daggerlm/`), from the package registry, as a new user's first run does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "DAGGERLM_BENCH_TEACHER_KEY"
STUDENT = Path("models") / "student"


def sh(args: list[str], cwd: Path, env: dict, timeout: float = 3600) -> tuple[int, str]:
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def must(args: list[str], cwd: Path, env: dict, what: str, timeout: float = 3600) -> tuple[str, float]:
    start = time.monotonic()
    code, log = sh(args, cwd, env, timeout)
    if code != 0:
        full = Path(tempfile.gettempdir()) / f"mutation_job-{os.getpid()}.log"
        full.write_text(log)
        sys.exit(f"{what} failed (exit {code}; its whole output: {full}):\n{log[-4000:]}")
    return log, round(time.monotonic() - start, 1)


def clone_with_changes(project: Path) -> list[str]:
    """A clone of HEAD with this checkout's uncommitted changes (tracked diffs, untracked files)."""
    subprocess.run(["git", "clone", "-q", str(REPO), str(project)], check=True)
    diff = subprocess.run(["git", "diff", "--binary", "HEAD"], cwd=REPO, capture_output=True, check=True).stdout
    if diff:
        subprocess.run(["git", "apply", "--whitespace=nowarn"], cwd=project, input=diff, check=True)
    changed = subprocess.run(["git", "diff", "--name-only", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout.split()
    for name in untracked:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, project / name)
    return sorted(changed + untracked)


def make_student(project: Path) -> str:
    """The student directory, made outside the pipeline; returns what it is."""
    built = REPO / "models" / "tiny-student"
    if (built / "model.safetensors").is_file():
        shutil.copytree(built, project / STUDENT,  # the model, not daggerlm's notes on how it was built
                        ignore=shutil.ignore_patterns("daggerlm_checkpoint.json", "pretrain.json"))
        return "copy of models/tiny-student (daggerlm build-student)"
    sys.path.insert(0, str(REPO))
    from tests.user_model import save_user_model

    save_user_model(project / STUDENT)
    return "tests/user_model.py save_user_model (tiny Qwen2, Qwen chat template)"


def write_params(project: Path, a: argparse.Namespace, teacher_port: int) -> None:
    from daggerlm.config import edit_params

    def edit(data: dict) -> None:
        for split, n in (("train", a.train_n), ("eval", a.eval_n)):
            data["instances"][split] = {"source": "mutation", "libraries": a.libraries, "n": n, "seed": a.seed}
        data["student"].update(model=f"./{STUDENT.as_posix()}", build_tiny=False)
        data["teacher"].update(kind="openai", endpoint={
            "base_url": f"http://127.0.0.1:{teacher_port}/v1", "model": "oracle", "api_key_env": KEY_ENV,
            "send_state": True, "timeout_s": 300})
        data["train"]["mode"] = "lora"
        data["train"]["sft"].update(num_train_epochs=a.epochs, learning_rate=a.learning_rate)
        data["dagger"].update(iterations=a.iterations, concurrency=a.concurrency, episodes_per_iteration=None)
        data["evaluation"]["concurrency"] = a.concurrency
        data["runtime"].update(kind="auto", timeout_s=a.timeout_s)

    edit_params(project / "params.yaml", edit)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="keep the project in this (new) directory; default: a temporary one")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "mutation_job.json")
    ap.add_argument("--libraries", nargs="+", default=["wcwidth", "parse"])
    ap.add_argument("--train-n", type=int, default=4)
    ap.add_argument("--eval-n", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=2, help="episodes at once (2 cores here)")
    ap.add_argument("--epochs", type=int, default=4, help="train.sft.num_train_epochs (12 by default: ~7 min "
                    "per iteration here)")
    ap.add_argument("--learning-rate", type=float, default=1e-3, help="train.sft.learning_rate (LoRA's usual, "
                    "higher than full fine-tuning's 2e-4)")
    ap.add_argument("--timeout-s", type=int, default=60, help="runtime.timeout_s: per agent command")
    a = ap.parse_args()
    from daggerlm.serving.process import free_port, managed_server

    venv_bin = Path(sys.executable).parent
    with ExitStack() as stack:
        if a.out:
            if a.out.exists():
                sys.exit(f"{a.out}: exists; give a new directory")
            project = a.out.resolve()
        else:
            project = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="daggerlm-mutation-job-"))) / "proj"
        worktree_changes = clone_with_changes(project)
        key = "sk-bench-" + secrets.token_hex(16)
        env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(project),
               "DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PREFECT_HOME": str(project / ".prefect"), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
               "HF_HUB_OFFLINE": "1", KEY_ENV: key}
        student = make_student(project)
        teacher_port = free_port()
        write_params(project, a, teacher_port)
        timings = {}
        _, timings["pipeline_write_s"] = must(["daggerlm", "pipeline", "write"], project, env, "daggerlm pipeline write")
        _, timings["instances_s"] = must(["dvc", "repro", "--single-item", "instances"], project, env,
                                         "dvc repro instances")
        splits = {s: [json.loads(line) for line in (project / "data" / "instances" / f"{s}.jsonl").read_text()
                      .splitlines()] for s in ("train", "eval")}
        server = [sys.executable, "-m", "daggerlm.serving.oracle_server", "--instances",
                  str(project / "data" / "instances" / "train.jsonl"),
                  "--port", str(teacher_port), "--api-key-env", KEY_ENV]
        (project / ".daggerlm" / "logs").mkdir(parents=True, exist_ok=True)
        stack.enter_context(managed_server(server, teacher_port, project / ".daggerlm" / "logs" / "oracle_server.log",
                                           timeout_s=120, env={KEY_ENV: key}))
        log, timings["main_job_s"] = must([sys.executable, "-m", "flows.dagger"], project, env, "main job")
        rows = json.loads((project / "data" / "report" / "iterations.json").read_text())
        _, status = sh(["dvc", "status"], project, env)
        start = time.monotonic()
        _, repro = sh(["dvc", "repro"], project, env)
        timings["second_repro_s"] = round(time.monotonic() - start, 1)
        leaked = [str(f.relative_to(project)) for f in project.rglob("*")
                  if f.is_file() and not f.is_symlink() and key.encode() in f.read_bytes()]
        result = {
            "bench": "mutation_job", "machine": platform.platform(), "cpus": os.cpu_count(),
            "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True,
                                     text=True).stdout.strip(),  # what was cloned
            "worktree_changes": worktree_changes,  # applied over it
            "command": " ".join(["bench/mutation_job.py", *sys.argv[1:]]),
            "params": {"libraries": a.libraries, "train_n": a.train_n, "eval_n": a.eval_n, "seed": a.seed,
                       "iterations": a.iterations, "concurrency": a.concurrency, "runtime_timeout_s": a.timeout_s,
                       "epochs": a.epochs, "learning_rate": a.learning_rate,
                       "student": student, "train_mode": "lora", "teacher": "oracle over HTTP (openai kind)",
                       "runtime_kind": "auto"},
            "instances": {s: [{"instance_id": i["instance_id"], "repo": i["repo"],
                               "fail_to_pass": len(i["FAIL_TO_PASS"]), "pass_to_pass": len(i["PASS_TO_PASS"])}
                              for i in items] for s, items in splits.items()},
            **timings,
            "flow_stages_run": next((line.split("stages run: ", 1)[1].strip() for line in log.splitlines()
                                     if "stages run: " in line), None),
            "iterations": rows, "last_resolve_rate": rows[-1]["resolve_rate"],
            "dvc_status_clean": "Data and pipelines are up to date" in status,
            "second_repro_ran_a_stage": "Running stage" in repro,
            "teacher_key_in_files": leaked,
        }
        if a.out:
            print(f"project kept at {project}")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("iterations", "instances")}, indent=2))
    for row in rows:
        print({k: row[k] for k in ("iteration", "beta", "episodes", "labels_new", "labels_total", "resolve_rate",
                                   "train_loss_before", "train_loss_after") if k in row})


if __name__ == "__main__":
    main()
