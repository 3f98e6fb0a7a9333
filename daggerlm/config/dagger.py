"""The DAgger loop: β schedule, labels, evaluation (instances: `config.instances`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from daggerlm.config.base import Section

ScheduleKind = Literal["constant", "linear", "exponential", "floored_linear"]


class BetaSchedule(BaseModel):
    """β_K for iteration K = 0, 1, ...:

    - constant:        β_K = value
    - linear:          β_K = max(0, 1 − decay·K)
    - exponential:     β_K = p^K  (p = 0: pure on-policy after iteration 0)
    - floored_linear:  β_K = max(floor, 1 − decay·K)  (the DAgger-for-LLM-agents paper: floor 0.6, decay 0.2)
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    kind: ScheduleKind = "floored_linear"
    value: float = Field(1.0, ge=0.0, le=1.0)
    """β of the constant schedule."""
    p: float = Field(0.5, ge=0.0, le=1.0)
    """Base of the exponential schedule."""
    decay: float = Field(0.2, ge=0.0, le=1.0)
    """Per-iteration decrease of the linear schedules."""
    floor: float = Field(0.6, ge=0.0, le=1.0)
    """Lowest β of the floored linear schedule."""

    def beta(self, iteration: int) -> float:
        if self.kind == "constant":
            return self.value
        if self.kind == "linear":
            return max(0.0, 1.0 - self.decay * iteration)
        if self.kind == "exponential":
            return self.p**iteration
        return max(self.floor, 1.0 - self.decay * iteration)


class ExecutorConfig(Section):
    """Where a fan-out stage's items (rollout, label and evaluate episodes) run when the stage runs as a
    Prefect flow (`daggerlm stage ... --prefect`, the loop flow, `dvc repro`)."""

    kind: Literal["threads", "dask"] = "threads"
    """`threads`: a thread per concurrent item in the stage's process; `dask`: tasks on a Dask cluster
    (prefect-dask), each worker running its own sandboxes and reaching served models over HTTP (an
    in-process `hf` student or teacher cannot go there: serve it, `student.kind: openai`)."""
    address: str | None = None
    """The scheduler of a running cluster (`tcp://host:8786`); None with `dask`: a local cluster of
    `workers` processes for the stage."""
    workers: int = Field(2, ge=1)


class DaggerConfig(Section):
    iterations: int = Field(2, ge=1)
    beta: BetaSchedule = BetaSchedule()
    rollin_turns: int | None = Field(None, ge=0)
    """AggreVaTe-style roll-in: the student acts for the first κ turns, then the teacher (replaces the coin)."""
    concurrency: int = Field(8, ge=1)
    """Episodes run at once; the student generates for all of them in one batch per turn."""
    label_cache: str = ".daggerlm/label_cache"
    """Directory of the content-addressed teacher-label cache (shared by all iterations)."""
    episodes_per_iteration: int | None = Field(None, ge=1)
    """Train instances per iteration: iteration K rolls out the K-th slice of this many (wrapping
    around the train split), so every iteration meets new tasks; None: the whole split every iteration."""
    labels_per_iteration: int | None = Field(None, ge=1)
    """Label budget: at most this many new states join the aggregate per iteration (a seeded sample),
    so schedules compare at equal teacher-label budget; None: every labeled state."""
    executor: ExecutorConfig = ExecutorConfig()
    max_failed_share: float = Field(0.0, ge=0, le=1)
    """Share of a stage's episodes (rollout, evaluate) or trajectories (label) that may fail because a
    policy could not be reached; they are left out of the stage's outputs and counted in its stats.
    More fail the stage (exit 75), so an outage is never recorded as the agent's failure; a rerun
    keeps what finished and retries the rest."""


class EvalConfig(Section):
    policy: Literal["student", "oracle"] = "student"
    """Who acts in evaluation episodes: the iteration's trained student, or the oracle (a sanity check)."""
    concurrency: int = Field(8, ge=1)


