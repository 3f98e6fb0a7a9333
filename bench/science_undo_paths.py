"""Where recovery starts (tests failed on a wrong change), does the student's undo name the files it
changed, and could it have copied them from the failing run's output, its last observation?

Reads finished science runs (their eval episodes); runs nothing.

    .venv/bin/python bench/science_undo_paths.py bench/results/science-12ep/work/runs-ea2a0b2049 \\
        --arm dagger-exp --iteration 2 > bench/results/science-12ep/undo_paths.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.science import SETBACK_STATE, eval_episodes  # noqa: E402
from daggerlm.dagger.layout import Layout  # noqa: E402
from daggerlm.evaluation.agreement import action_kind, state_kind  # noqa: E402
from daggerlm.policies.oracle import changed_paths  # noqa: E402


def undo_paths(run: Path, iteration: int) -> Counter:
    """Counts of (action kind, are the changed paths in the last observation, does an undo name exactly them)."""
    episodes, instances = eval_episodes(Layout(run), iteration)
    counts = Counter()
    for traj in episodes:
        for n, turn in enumerate(traj.turns):
            if state_kind(traj, n, instances[traj.instance_id]) != SETBACK_STATE:
                continue
            restore, _ = changed_paths(turn.snapshot.get("diff", ""))
            shown = all(path in traj.messages[turn.prefix_len - 1]["content"] for path in restore)
            kind = action_kind(turn.action)
            named = kind == "undo" and sorted(re.findall(r"\./(\S+)", turn.action)) == sorted(restore)
            counts[(kind, shown, named)] += 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", type=Path, help="a science runs-<key> directory (holds seed_<n>/<arm>)")
    ap.add_argument("--arm", default="dagger-exp")
    ap.add_argument("--iteration", type=int, default=2)
    a = ap.parse_args()
    total = Counter()
    for run in sorted(a.runs.glob(f"seed_*/{a.arm}")):
        total += undo_paths(run, a.iteration)
    print(json.dumps([{"action": kind, "changed_paths_in_last_observation": shown, "undo_names_them": named, "n": n}
                      for (kind, shown, named), n in sorted(total.items())], indent=1))


if __name__ == "__main__":
    main()
