"""The student's GPU paths against its CPU ones, in one run: pretraining, fine-tuning, generation.

Each path is the pipeline's own code (`training.pretrain.pretrain`, `training.sft.train`, the `hf`
policy) on the same tiny student (the science check's shape by default) and the same oracle-labeled
aggregate, once in a worker that sees no GPU (`CUDA_VISIBLE_DEVICES=`) and once on CUDA. The JSON
holds both workers' wall times and losses, CUDA/CPU speed ratios, and how often each device's
fine-tuned student, decoding greedily, takes its labels' action (the two must learn alike).

    python bench/training_devices.py --out bench/results/training_devices.json   # needs a CUDA device

Run by hand on a GPU machine; CI has none. The inputs need the rollout stack (sandbox, oracle
episodes); where the GPU's environment has only the training stack, make them elsewhere with
`--prepare-only DIR` and pass `--inputs DIR`.
"""

from __future__ import annotations

import argparse
import dataclasses
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

from daggerlm.io import atomic_write_json  # noqa: E402


def prepare(work: Path, a: argparse.Namespace) -> None:
    """The shared inputs: a tiny student with random weights (`base/`), its pretraining corpus
    (`corpus.json`), an aggregate of oracle-labeled states (`train.parquet`)."""
    import pandas as pd

    from daggerlm.agent.scaffold import run_episode
    from daggerlm.config import load_params
    from daggerlm.dagger.aggregate import write_parquet
    from daggerlm.dagger.stages import stage_init_model
    from daggerlm.training.tiny_student import corpus_document
    from daggerlm.instances.synthetic import generate
    from daggerlm.policies import make_policy

    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    tiny = {"num_hidden_layers": a.layers, "corpus_episodes": 8}
    p = load_params(None, {"data": str(work / "data"), "student.model": str(work / "base"), "student.tiny": tiny,
                           "runtime.workdir": tempfile.mkdtemp(prefix="bench-devices-sandboxes-")})
    stage_init_model(p)
    documents = [corpus_document(i) for i in generate(200, "train", seed=10_000)]
    (work / "corpus.json").write_text(json.dumps(documents))
    oracle, rows = make_policy("oracle"), []
    for inst in generate(a.episodes, "train", seed=21):
        traj = run_episode(inst, {"teacher": oracle}, lambda t: "teacher", runtime=p.runtime, agent=p.agent)
        rows += [{"state_hash": f"{inst.instance_id}-{t.index}", "prompt": traj.messages[: t.prefix_len],
                  "completion": [{"role": "assistant", "content": t.label}], "iteration": 0, "actor": "teacher"}
                 for t in traj.turns]
    write_parquet(work / "train.parquet", pd.DataFrame(rows))


def worker(inputs: Path, work: Path, name: str, a: argparse.Namespace) -> dict:
    """Pretrain, fine-tune and generate on this process's device; timings and losses."""
    import pandas as pd
    import torch

    from daggerlm.actions import extract_action
    from daggerlm.policies import PolicyRequest, make_policy
    from daggerlm.config import Sampling
    from daggerlm.config import TrainConfig
    from daggerlm.training.pretrain import pretrain
    from daggerlm.training.sft import train

    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert (device == "cuda") == (name == "cuda"), f"worker {name} sees device {device}"
    out: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
                 "torch_threads": torch.get_num_threads()}
    model = work / f"{name}-pretrained"
    shutil.copytree(inputs / "base", model)
    t = time.perf_counter()
    out["pretrain"] = pretrain(model, json.loads((inputs / "corpus.json").read_text()), steps=a.pretrain_steps,
                               device=device)
    out["pretrain"]["wall_s"] = round(time.perf_counter() - t, 2)
    sft = {"num_train_epochs": a.epochs, "learning_rate": 2e-3, "disable_tqdm": True, "logging_steps": 1000}
    t = time.perf_counter()
    meta = train(inputs / "train.parquet", str(model), work / f"{name}-sft", TrainConfig(sft=sft), seed=0)
    out["sft"] = {"wall_s": round(time.perf_counter() - t, 2), "examples": meta["examples"], "steps": meta["steps"],
                  "loss_before": meta["loss_before"], "loss_after": meta["loss_after"]}
    rows = pd.read_parquet(inputs / "train.parquet").head(a.prompts).to_dict("records")
    requests = [PolicyRequest(None, list(r["prompt"]), {}) for r in rows]
    out["generate"] = {}
    for dtype in ["float32", "bfloat16"] if device == "cuda" else ["float32"]:
        policy = make_policy("hf", model=str(work / f"{name}-sft"), device=device, dtype=dtype,
                             sampling=Sampling(temperature=0, max_new_tokens=64))
        policy.complete(requests[:2])  # warm-up: kernels, allocator
        t = time.perf_counter()
        completions = policy.complete(requests)
        wall = time.perf_counter() - t
        tokens = sum(c.meta["completion_tokens"] for c in completions)
        label_actions = sum(extract_action(c.text) == extract_action(r["completion"][0]["content"])
                            for c, r in zip(completions, rows))
        out["generate"][dtype] = {"wall_s": round(wall, 3), "tokens": tokens, "tokens_per_s": round(tokens / wall, 1),
                                  "label_action": f"{label_actions}/{len(rows)}"}
    out["sampled"] = sampled_consistency(str(work / f"{name}-sft"), requests, device)
    return out


def sampled_consistency(model: str, requests: list, device: str) -> dict:
    """Seeded sampling must give a request the same tokens on a second call and outside its batch."""
    from daggerlm.policies import make_policy
    from daggerlm.config import Sampling

    policy = make_policy("hf", model=model, device=device, sampling=Sampling(temperature=0.7, top_p=0.9,
                                                                               max_new_tokens=64))
    seeded = [dataclasses.replace(r, seed=1000 + i) for i, r in enumerate(requests)]
    first = [c.text for c in policy.complete(seeded)]
    again = [c.text for c in policy.complete(seeded)]
    alone = [policy.complete([r])[0].text for r in seeded[:4]]
    return {"same_on_second_call": f"{sum(x == y for x, y in zip(first, again))}/{len(first)}",
            "same_outside_batch": f"{sum(x == y for x, y in zip(first, alone))}/{len(alone)}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=4, help="student.tiny.num_hidden_layers of inputs made here")
    ap.add_argument("--pretrain-steps", type=int, default=100, help="16 x 256-token windows each")
    ap.add_argument("--episodes", type=int, default=8, help="oracle episodes in the fine-tuning aggregate made here")
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--prompts", type=int, default=32, help="states generated for in one batch")
    ap.add_argument("--out", type=Path, default=Path("bench/results/training_devices.json"))
    ap.add_argument("--inputs", type=Path, help="inputs made by --prepare-only (default: made here, in a temp dir)")
    ap.add_argument("--prepare-only", type=Path, metavar="DIR", help="write the inputs to DIR and stop")
    ap.add_argument("--worker", choices=["cpu", "cuda"], help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.prepare_only:
        prepare(a.prepare_only, a)
        return
    if a.worker:
        atomic_write_json(a.work / f"{a.worker}.json", worker(a.inputs, a.work, a.worker, a))
        return
    import torch

    if not torch.cuda.is_available():
        sys.exit("training_devices: no CUDA device visible (torch.cuda.is_available() is False); run it on a GPU machine")
    work = Path(tempfile.mkdtemp(prefix="bench-devices-"))
    inputs = a.inputs or work / "inputs"
    for name in ("base", "corpus.json", "train.parquet"):
        if a.inputs and not (inputs / name).exists():
            sys.exit(f"training_devices: {inputs / name} not found (make the inputs with --prepare-only {inputs})")
    t = time.perf_counter()
    if not a.inputs:
        prepare(inputs, a)
    shown = {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items() if k not in ("worker", "work")}
    report: dict = {"bench": "training_devices", "args": shown, "machine": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "prepare_s": round(time.perf_counter() - t, 1)}
    for name in ("cpu", "cuda"):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "" if name == "cpu" else os.environ.get("CUDA_VISIBLE_DEVICES", "0")}
        argv = [sys.executable, __file__, "--worker", name, "--work", str(work), "--inputs", str(inputs),
                "--pretrain-steps", str(a.pretrain_steps), "--epochs", str(a.epochs), "--prompts", str(a.prompts)]
        subprocess.run(argv, env=env, check=True)
        report[name] = json.loads((work / f"{name}.json").read_text())
    cpu, cuda = report["cpu"], report["cuda"]
    report["speedup_cuda_over_cpu"] = {
        "pretrain": round(cpu["pretrain"]["wall_s"] / cuda["pretrain"]["wall_s"], 2),
        "sft": round(cpu["sft"]["wall_s"] / cuda["sft"]["wall_s"], 2),
        "generate_float32": round(cpu["generate"]["float32"]["wall_s"] / cuda["generate"]["float32"]["wall_s"], 2),
        "generate_bfloat16": round(cpu["generate"]["float32"]["wall_s"] / cuda["generate"]["bfloat16"]["wall_s"], 2)}
    atomic_write_json(a.out, report)
    print(json.dumps(report, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
