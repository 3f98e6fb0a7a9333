"""Iteration 0 of the science check's runs, fine-tuned again in bfloat16 autocast and in float32
from the same base on the same aggregate, then evaluated on the same held-out split: does the
training precision alone move the resolve rate? (The committed results before `sft.precision`
trained in TRL's default bfloat16.)

    .venv/bin/python bench/science_precision_probe.py --out bench/results/science-history/precision_probe.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.science import SETTINGS, arm_params  # noqa: E402
from daggerlm.dagger import stages  # noqa: E402
from daggerlm.evaluation.evaluate import evaluate  # noqa: E402
from daggerlm.io import atomic_write_json  # noqa: E402
from daggerlm.serving.student import open_student  # noqa: E402
from daggerlm.training.sft import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--science-out", type=Path, default=Path("bench/results/science-history"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/science-history/precision_probe.json"))
    a = ap.parse_args()
    s, rows = SETTINGS["history"], []
    with tempfile.TemporaryDirectory(prefix="science-precision-") as tmp:
        for seed in a.seeds:
            p = arm_params(s, seed, "bc", (a.science_out / "work").resolve(), {}, data="start")
            lay = stages.layout(p)
            for dtype in ("float32", "bfloat16"):
                cfg = p.train.model_copy(update={"sft": {**p.train.sft, "bf16": dtype == "bfloat16"}})
                out = Path(tmp) / f"{seed}-{dtype}"
                t = time.perf_counter()
                meta = train(lay.aggregated(0) / "train.parquet", stages.checkpoint(p, 0), out, cfg, seed=p.seed)
                train_s = time.perf_counter() - t
                with open_student(p.student, str(out)) as policy:
                    m = evaluate(stages.load_split(p, "eval"), policy, Path(tmp) / f"eval-{seed}-{dtype}",
                                 runtime=p.runtime, agent=p.agent, concurrency=p.evaluation.concurrency,
                                 model_name=str(out), seed=p.seed)
                row = {"seed": seed, "precision": meta["precision"], "train_s": round(train_s, 1),
                       "loss_after": meta["loss_after"], "resolve_rate": m["resolve_rate"]}
                print(row, flush=True)
                rows.append(row)
    atomic_write_json(a.out, {"bench": "science_precision_probe", "iteration": 0, "runs": rows})


if __name__ == "__main__":
    main()
