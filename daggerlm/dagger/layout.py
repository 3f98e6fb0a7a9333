"""Where each stage's outputs live under the `data` param (the one place that names these paths)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    def params(self) -> Path:
        """params.yaml resolved (every default filled in): what DVC and every stage after `params` read.
        Beside the data directory, committed with dvc.yaml, so DVC finds every declared key on a clean checkout."""
        return self.root.parent / "params.resolved.yaml"

    def instances(self, split: str) -> Path:
        return self.root / "instances" / f"{split}.jsonl"

    def checkpoint(self, k: int) -> Path:
        """The student of iteration k: built by init-model for k = 0, else trained in iteration k−1."""
        return self.root / "checkpoints" / f"iter_{k}"

    def rollouts(self, k: int) -> Path:
        return self.root / "rollouts" / f"iter_{k}"

    def labels(self, k: int) -> Path:
        return self.root / "labels" / f"iter_{k}"

    def aggregated(self, k: int) -> Path:
        return self.root / "aggregated" / f"iter_{k}"

    def eval(self, k: int) -> Path:
        return self.root / "eval" / f"iter_{k}"

    def base_eval(self) -> Path:
        """Checkpoint 0 (the student before any DAgger iteration) on the eval split: the table's first row."""
        return self.root / "eval" / "base"

    def curriculum(self, k: int) -> Path:
        """Checkpoint k+1's entropy and rollout k+1's generation budget (`dagger.curriculum`)."""
        return self.eval(k) / "curriculum.json"

    def report(self) -> Path:
        return self.root / "report"

    def inspector(self) -> Path:
        """The HTML inspector of the run's trajectories (`dagger.inspect`)."""
        return self.report() / "inspect"
