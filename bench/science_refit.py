"""Refit the final aggregate of finished science runs with more epochs: do the students miss their
recovery labels for want of training, or can they not fit them at all?

For each (arm, seed) run of the default setting, iteration K's fine-tuning is repeated from the same
initial checkpoint on the same aggregate with each number of epochs given, and each refit student
is scored like the science check's train fit (greedy action against its own labels, by state).
The refits go to a temporary directory; the runs themselves are not touched.

    .venv/bin/python bench/science_refit.py --arms bc dagger-exp on-policy --epochs 3 12 \\
        --out bench/results/science-history/refit.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.science import ARMS, SETTINGS, arm_params, fit_by_state  # noqa: E402
from daggerlm.dagger import stages  # noqa: E402
from daggerlm.io import atomic_write_json  # noqa: E402
from daggerlm.training.sft import train  # noqa: E402


def refit(p, k: int, epochs: float, out: Path) -> dict:
    lay = stages.layout(p)
    cfg = p.train.model_copy(update={"sft": {**p.train.sft, "num_train_epochs": epochs}})
    t = time.perf_counter()
    meta = train(lay.aggregated(k) / "train.parquet", stages.checkpoint(p, k), out, cfg, seed=p.seed + k)
    return {"epochs": epochs, "steps": meta["steps"], "loss_after": meta["loss_after"],
            "wall_s": round(time.perf_counter() - t, 1), "fit": fit_by_state(p, k, str(out))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arms", nargs="+", default=["bc", "dagger-exp"], choices=list(ARMS))
    ap.add_argument("--seeds", type=int, nargs="+", help="default: the setting's")
    ap.add_argument("--epochs", type=float, nargs="+", default=[3, 12])
    ap.add_argument("--science-out", type=Path, default=Path("bench/results/science-history"),
                    help="the science check's --out whose runs to refit")
    ap.add_argument("--out", type=Path, default=Path("bench/results/science-history/refit.json"))
    a = ap.parse_args()
    s = SETTINGS["history"]
    root = (a.science_out / "work").resolve()
    k = s.iterations - 1
    results = []
    with tempfile.TemporaryDirectory(prefix="science-refit-") as tmp:
        for arm in a.arms:
            for seed in a.seeds or s.seeds:
                p = arm_params(s, seed, arm, root, {})
                if not stages.layout(p).checkpoint(k + 1).is_dir():
                    sys.exit(f"science_refit: {stages.layout(p).checkpoint(k + 1)} not found (run bench/science.py first)")
                for epochs in a.epochs:
                    row = {"arm": arm, "seed": seed, **refit(p, k, epochs, Path(tmp) / f"{arm}-{seed}-{epochs}")}
                    print(row, flush=True)
                    results.append(row)  # written after every refit: a stopped run keeps what it measured
                    atomic_write_json(a.out, {"bench": "science_refit", "iteration": k, "cpus": os.cpu_count(),
                                              "runs": results})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
