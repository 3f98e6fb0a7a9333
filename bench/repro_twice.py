"""Two clean runs agree: the main job (`bench/main_job.py`: the tiny student's build, then `python -m
flows.dagger`) from two clean clones on this machine, one after the other, then their dvc.lock
compared out by out (md5); for an out that differs, the files inside it that differ. JSON out
(default `bench/results/repro_twice.json`).

    .venv/bin/python bench/repro_twice.py                   # ~2 x (build + main job) on 2 cores
    .venv/bin/python bench/repro_twice.py --reuse-student   # both clones start from this checkout's build
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import yaml

from main_job import REPO, clone, main_job, provenance  # bench/ is this script's directory


def lock_outs(project: Path) -> dict[str, str]:
    """{out path: md5} of every stage's outs in the project's dvc.lock."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    return {out["path"]: out["md5"] for stage in lock.values() for out in stage.get("outs", [])}


def file_digests(root: Path) -> dict[str, str]:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)) if p != root else root.name: hashlib.md5(p.read_bytes()).hexdigest()
            for p in files}


def differences(a: Path, b: Path) -> list[dict]:
    """The outs whose md5 differ between the two projects, each with the files inside it that differ."""
    outs_a, outs_b = lock_outs(a), lock_outs(b)
    found = []
    for path in sorted(set(outs_a) | set(outs_b)):
        if outs_a.get(path) == outs_b.get(path):
            continue
        files_a, files_b = file_digests(a / path), file_digests(b / path)
        found.append({"out": path, "files": sorted(f for f in set(files_a) | set(files_b)
                                                   if files_a.get(f) != files_b.get(f))})
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reuse-student", action="store_true", help="copy this checkout's built student into both clones")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a param for both runs (the flow's --set), e.g. smaller sizes for a quick look")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "repro_twice.json")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="daggerlm-repro-twice-") as tmp:
        projects = [clone(Path(tmp) / f"run{i}") for i in (1, 2)]
        runs = [main_job(p, reuse_student=a.reuse_student, overrides=a.overrides) for p in projects]
        diff = differences(*projects)
        result = {**provenance("repro_twice"), "overrides": a.overrides, "outs": len(lock_outs(projects[0])), "identical": not diff,
                  "differences": diff, "runs": [{k: v for k, v in r.items() if k not in ("iterations", "table")}
                                                for r in runs], "table": runs[0]["table"]}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2))


if __name__ == "__main__":
    main()
