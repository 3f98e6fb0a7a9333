"""Rollout throughput against one served student: episodes per minute at 1, 8 and 32 concurrent episodes.

Starts `transformers serve --continuous-batching` once on a tiny student (built locally unless
`--model` names a checkpoint), then runs the rollout collector on the same synthetic train instances
at each concurrency, in one run: every student turn is an HTTP request, teacher turns (oracle, with
probability β) run real commands in the sandbox meanwhile. JSON out, ratios against concurrency 1.

    .venv/bin/python bench/rollout_concurrency.py --out bench/results/rollout_concurrency.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daggerlm.agent.scaffold import first_messages  # noqa: E402
from daggerlm.config import load_params  # noqa: E402
from daggerlm.dagger.label_cache import CachedTeacher, LabelCache  # noqa: E402
from daggerlm.dagger.rollout import collect_rollouts  # noqa: E402
from daggerlm.dagger.stages import stage_init_model  # noqa: E402
from daggerlm.instances.synthetic import generate  # noqa: E402
from daggerlm.io import atomic_write_json  # noqa: E402
from daggerlm.policies import make_policy  # noqa: E402
from daggerlm.policies.base import PolicyRequest  # noqa: E402
from daggerlm.serving.student import open_student  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--episodes", type=int, default=32, help="episodes per setting (the same instances each time)")
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--model", help="checkpoint to serve (default: a tiny model built here)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/rollout_concurrency.json"))
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    p = load_params(None, {
        "data": str(work / "data"), "student.model": a.model or str(work / "tiny"), "student.kind": "openai",
        "student.build_tiny": a.model is None, "student.sampling.max_new_tokens": a.max_new_tokens,
        "student.server": {"launch": "transformers", "log_dir": str(work / "logs")},
        "agent.step_limit": a.steps, "agent.max_consecutive_format_errors": 0, "runtime.workdir": str(work)})
    if a.model is None:
        stage_init_model(p)
    instances = generate(a.episodes, "train", seed=123)
    results = []
    with open_student(p.student, p.student.model) as student:
        student.complete([PolicyRequest(instances[0], first_messages(instances[0]), {})])  # warm the server
        for c in a.concurrency:
            teacher = CachedTeacher(make_policy("oracle"), LabelCache(work / f"labels-{c}"))  # cold each time
            start = time.monotonic()
            stats = collect_rollouts(instances, student, teacher, work / f"rollout-{c}", iteration=0, beta=a.beta,
                                     seed=0, runtime=p.runtime, agent=p.agent, concurrency=c)
            seconds = time.monotonic() - start
            results.append({"concurrency": c, "episodes": stats["episodes"], "seconds": round(seconds, 2),
                            "episodes_per_min": round(stats["episodes"] / seconds * 60, 2),
                            "student_turns": stats["student_turns"], "teacher_turns": stats["teacher_turns"]})
            print(json.dumps(results[-1]), flush=True)
    base = results[0]["episodes_per_min"]
    for r in results:
        r["speedup_vs_first"] = round(r["episodes_per_min"] / base, 2)
    report = {"bench": "rollout_concurrency", "server": "transformers serve --continuous-batching",
              "model": a.model or "tiny (built here)", "beta": a.beta, "step_limit": a.steps,
              "max_new_tokens": a.max_new_tokens, "machine": platform.platform(), "results": results}
    atomic_write_json(a.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
