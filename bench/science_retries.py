"""When a student tries the fix again from a clean worktree (after an undo, or after an edit
that changed nothing), does the retry differ from the attempt that failed? A student that decides
the same way at the same state repeats its mistake, and then no recovery the teacher teaches can
end in a resolve.

Reads finished science runs (their eval episodes); runs nothing.

    .venv/bin/python bench/science_retries.py bench/results/science-recovery/work/runs-733f70c2f5 \\
        --arms bc dagger-exp > bench/results/science-recovery/retries.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daggerlm.agent.trajectory import Trajectory  # noqa: E402
from daggerlm.dagger.layout import Layout  # noqa: E402
from daggerlm.evaluation.agreement import action_kind, worktree  # noqa: E402
from daggerlm.instances import load_instances  # noqa: E402
from daggerlm.io import ResultStore  # noqa: E402
from daggerlm.policies.oracle import Oracle, gold_fix  # noqa: E402


def retries(run: Path, iteration: int) -> Counter:
    """Per run: episodes, fixes tried from a clean worktree, and what the retries among them were."""
    lay = Layout(run)
    instances = {i.instance_id: i for i in load_instances(lay.instances("eval"))}
    counts = Counter()
    for result in ResultStore(lay.eval(iteration) / "results").values():
        traj = Trajectory.model_validate(result["trajectory"])
        inst = instances[traj.instance_id]
        fix = Oracle.fix_command(inst, gold_fix(inst.patch))
        attempts = [t.action.strip() for t in traj.turns
                    if action_kind(t.action) == "edit" and worktree(t, inst) == "at base"]
        counts["episodes"] += 1
        counts["first_attempt_is_the_fix"] += bool(attempts) and attempts[0] == fix
        if len(attempts) < 2:
            continue
        counts["episodes_with_a_retry"] += 1
        counts["resolved_with_a_retry"] += bool(result["report"]["resolved"])
        for n, retry in enumerate(attempts[1:], start=1):
            counts["retries"] += 1
            counts["retry_repeats_a_failed_attempt"] += retry in attempts[:n]
            counts["retry_is_the_fix"] += retry == fix
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", type=Path, help="a science runs-<key> directory (holds seed_<n>/<arm>)")
    ap.add_argument("--arms", nargs="+", default=["bc", "dagger-exp"])
    ap.add_argument("--iteration", type=int, default=2)
    a = ap.parse_args()
    out = {}
    for arm in a.arms:
        total = Counter()
        for run in sorted(a.runs.glob(f"seed_*/{arm}")):
            total += retries(run, a.iteration)
        out[arm] = dict(sorted(total.items()))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
