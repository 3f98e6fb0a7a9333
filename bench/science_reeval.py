"""Evaluate a science run's final students again under other settings (a higher sampling
temperature, say), training nothing: does a retried fix after an undo succeed once the student's
choices vary more from try to try? With `--slip-first-edit` every episode's first edit slips (the
edit runs, then a line that breaks the module is appended to the file): the tests fail on a
change that is not the fix, whether the student's own fix was right or not. That is the setback
DAgger's recovery labels teach, without the student's own systematic mistake behind it.

Each student is evaluated as it was trained to see the history (its checkpoint records the view),
on the run's own eval split; episodes are written in the run's layout, so `science_retries.py`
reads them too.

    .venv/bin/python bench/science_reeval.py bench/results/science-recovery/work/runs-733f70c2f5 \\
        --set student.sampling.temperature=1.0 --out bench/results/science-recovery/work/temperature-1.0
    .venv/bin/python bench/science_reeval.py bench/results/science-recovery/work/runs-733f70c2f5 \\
        --slip-first-edit --out bench/results/science-recovery/work/slip
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from statistics import mean, pstdev

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.science import SANDBOXES, SlipFirstEdit  # noqa: E402
from daggerlm.config import load_params  # noqa: E402
from daggerlm.dagger import stages  # noqa: E402
from daggerlm.dagger.layout import Layout  # noqa: E402
from daggerlm.evaluation import evaluate  # noqa: E402
from daggerlm.instances import load_instances  # noqa: E402
from daggerlm.io import atomic_write_json, parse_overrides  # noqa: E402
from daggerlm.policies.checkpoints import CHECKPOINT_META  # noqa: E402

def reevaluate(run: Path, out: Path, iteration: int, overrides: dict, slip: bool = False) -> dict:
    """The metrics of run's student of iteration `iteration` (trained in it), evaluated again into `out`."""
    model = Layout(run).checkpoint(iteration + 1)
    meta = json.loads((model / CHECKPOINT_META).read_text())
    eval_split = Layout(run).instances("eval")
    p = load_params(None, {"seed": int(run.parent.name.removeprefix("seed_")), "student.model": str(model),
                           "student.keep_turns": meta.get("keep_turns"),
                           "student.keep_observations": meta.get("keep_observations"),
                           "runtime.workdir": str(SANDBOXES), **overrides})
    instances = load_instances(eval_split)
    SANDBOXES.mkdir(parents=True, exist_ok=True)
    Layout(out).instances("eval").parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(eval_split, Layout(out).instances("eval"))
    with stages.evaluation_policy(p, 0) as (policy, name):
        policy = SlipFirstEdit(policy) if slip else policy
        return evaluate(instances, policy, Layout(out).eval(iteration), runtime=p.runtime, agent=p.agent,
                        concurrency=len(instances), model_name=name, seed=p.seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", type=Path, help="a science runs-<key> directory (holds seed_<n>/<arm>)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--arms", nargs="+", default=["bc", "dagger-exp"])
    ap.add_argument("--iteration", type=int, default=2, help="the last iteration of the runs")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a param for the evaluation")
    ap.add_argument("--slip-first-edit", action="store_true", help="every episode's first edit breaks the module")
    a = ap.parse_args()
    overrides = parse_overrides(a.set)
    summary = {"overrides": overrides, "slip_first_edit": a.slip_first_edit, "arms": {}}
    for arm in a.arms:
        metrics = {run.parent.name: reevaluate(run, a.out / run.parent.name / arm, a.iteration, overrides,
                                                     a.slip_first_edit)
                   for run in sorted(a.runs.glob(f"seed_*/{arm}"))}
        rates = [m["resolve_rate"] for m in metrics.values()]
        summary["arms"][arm] = {"resolve_per_seed": rates, "resolve_mean": mean(rates), "resolve_std": pstdev(rates),
                                "setbacks": sum(m["setbacks"] for m in metrics.values()),
                                "recovered": sum(m["recovered"] for m in metrics.values())}
    atomic_write_json(a.out / "reeval.json", summary)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
