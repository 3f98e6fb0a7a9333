"""The train stage on several processes: `accelerate launch` (`train.launch`: its config file) runs
the stage's own in-process body once per process (DDP or FSDP over GPUs, gloo over CPU processes),
each on its shard of every batch; rank 0 writes the checkpoint, the same files one process writes.
The stage's params and iteration travel as a JSON job file.

    python -m daggerlm.dagger.launch JOB.json    # what each launched process runs
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from daggerlm.config import Params
from daggerlm.errors import InputError


def launched_train(p: Params, k: int) -> dict:
    """Train stage k under `accelerate launch --config_file train.launch`; the checkpoint's metadata."""
    from daggerlm.dagger.stages import checkpoint_meta

    if not Path(p.train.launch).is_file():
        raise InputError(f"train.launch: {p.train.launch}: accelerate config file not found")
    fd, job = tempfile.mkstemp(prefix=f"daggerlm-train-{k}-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump({"params": p.model_dump(mode="json"), "k": k}, f)
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate) if accelerate.is_file() else "accelerate", "launch", "--config_file", p.train.launch,
               "-m", "daggerlm.dagger.launch", job]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    finally:
        os.unlink(job)
    if done.returncode != 0:
        raise RuntimeError(f"accelerate launch --config_file {p.train.launch} exited {done.returncode}:\n"
                           + (done.stdout + done.stderr)[-4000:])
    return checkpoint_meta(p, k + 1)


def main(job_file: str) -> None:
    from daggerlm.dagger.stages import train_in_process

    job = json.loads(Path(job_file).read_text())
    train_in_process(Params.model_validate(job["params"]), job["k"])


if __name__ == "__main__":
    main(sys.argv[1])
