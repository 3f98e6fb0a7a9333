"""Fine-tuning on the CPU in float32 (daggerlm's default there) against bfloat16 (TRL's default).

The same tiny student (the science check's shape) fine-tunes on the same oracle-labeled aggregate
through the pipeline's own `training.sft.train`, once per precision, each in a fresh worker process.
Where the CPU lacks native bfloat16 matmuls (no AVX512-BF16 or AMX, e.g. an AVX2-only AMD EPYC),
PyTorch runs them through a generic kernel: the JSON gives both wall times, their ratio, both
losses, and the CPU flags that decide it.

    .venv/bin/python bench/sft_precision.py --out bench/results/sft_precision.json
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.training_devices import prepare  # noqa: E402
from daggerlm.io import atomic_write_json  # noqa: E402

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_model_and_flags() -> tuple[str, list[str]]:
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 platform.processor() or "unknown")
    return model, [f for f in FLAGS if f in set(text.split())]


def worker(inputs: Path, work: Path, dtype: str, epochs: float) -> dict:
    import torch

    from daggerlm.config import TrainConfig
    from daggerlm.training.sft import train

    assert not torch.cuda.is_available(), "run with CUDA_VISIBLE_DEVICES= (this compares CPU precisions)"
    sft = {"num_train_epochs": epochs, "learning_rate": 2e-3, "disable_tqdm": True, "logging_steps": 1000,
           "bf16": dtype == "bfloat16"}
    t = time.perf_counter()
    meta = train(inputs / "train.parquet", str(inputs / "base"), work / f"sft-{dtype}", TrainConfig(sft=sft), seed=0)
    return {"wall_s": round(time.perf_counter() - t, 2), "precision": meta["precision"], "steps": meta["steps"],
            "examples": meta["examples"], "loss_before": meta["loss_before"], "loss_after": meta["loss_after"],
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=4, help="student.tiny.num_hidden_layers")
    ap.add_argument("--episodes", type=int, default=8, help="oracle episodes in the aggregate")
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/results/sft_precision.json"))
    ap.add_argument("--worker", choices=["float32", "bfloat16"], help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        atomic_write_json(a.work / f"{a.worker}.json", worker(a.work / "inputs", a.work, a.worker, a.epochs))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-sft-precision-"))
    t = time.perf_counter()
    prepare(work / "inputs", a)
    import torch

    cpu, flags = cpu_model_and_flags()
    report: dict = {"bench": "sft_precision", "args": {"layers": a.layers, "episodes": a.episodes, "epochs": a.epochs},
                    "machine": platform.platform(), "cpu": cpu, "cpu_flags": flags,
                    "cpus": os.cpu_count(), "torch": torch.__version__, "prepare_s": round(time.perf_counter() - t, 1)}
    for dtype in ("float32", "bfloat16"):
        argv = [sys.executable, __file__, "--worker", dtype, "--work", str(work), "--epochs", str(a.epochs)]
        subprocess.run(argv, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, check=True)
        report[dtype] = json.loads((work / f"{dtype}.json").read_text())
    report["bfloat16_over_float32_wall"] = round(report["bfloat16"]["wall_s"] / report["float32"]["wall_s"], 2)
    atomic_write_json(a.out, report)
    print(json.dumps(report, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
