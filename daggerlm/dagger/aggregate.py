"""Aggregate K = aggregate K−1 ∪ labels K, de-duplicated by state hash (first label kept).

Stored in TRL's conversational prompt–completion format (parquet), with counts per iteration and
per actor. The aggregate's hash is over its content, so it names the data a checkpoint was trained on.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from daggerlm.dagger.teacher_scores import COLUMNS as SCORE_COLUMNS
from daggerlm.errors import InputError
from daggerlm.io import atomic_write_bytes, plain_python, stable_hash


def write_parquet(path: str | Path, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


def read_parquet(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found (run the stage that writes it first)")
    return pd.read_parquet(path)


def content_hash(frame: pd.DataFrame) -> str:
    """Over each state and its label, and the teacher's scores where the label stage stored them (not the
    student's behaviour log-probs: the same episode batched otherwise gives them a few last digits apart)."""
    columns = ["state_hash", "completion", *(c for c in SCORE_COLUMNS if c in frame)]
    return stable_hash([[plain_python(v) for v in row] for row in zip(*(frame[c] for c in columns))], length=32)


def within_budget(new: pd.DataFrame, budget: int | None, seed: int) -> pd.DataFrame:
    """At most `budget` rows, a sample that depends only on the seed and the states (not on row order)."""
    if budget is None or len(new) <= budget:
        return new
    order = sorted(range(len(new)), key=lambda i: stable_hash([seed, new["state_hash"].iloc[i]]))
    return new.iloc[sorted(order[:budget])]


def aggregate(previous: str | Path | None, labels: str | Path, out: str | Path, budget: int | None = None,
              seed: int = 0) -> dict:
    """Aggregate `previous` ∪ `labels`; with a `budget`, at most that many of the new states are added."""
    new = read_parquet(labels)
    old = read_parquet(previous) if previous else new.iloc[0:0]
    unseen = new[~new["state_hash"].isin(old["state_hash"])].drop_duplicates("state_hash", keep="first")
    added = within_budget(unseen, budget, seed)
    merged = pd.concat([old, added], ignore_index=True).reset_index(drop=True)
    write_parquet(out, merged)
    return {
        "examples": len(merged),
        "new_examples": len(added),
        "duplicates_dropped": len(new) - len(unseen),
        "over_budget_dropped": len(unseen) - len(added),
        "per_iteration": {str(k): int(v) for k, v in merged["iteration"].value_counts().sort_index().items()},
        "per_actor": {str(k): int(v) for k, v in merged["actor"].value_counts().sort_index().items()},
        "hash": content_hash(merged),
    }
