"""Where each split's instances come from: `instances.train` / `instances.eval` each name a `source`.

    synthetic  the synthetic family, generated (the default: a split without `source` is synthetic)
    file       a JSONL or parquet file of instance records
    hf         a Hugging Face dataset (SWE-bench, SWE-Gym) by name and split
    mutation   procedural bugs in real libraries (libraries.yaml), validated by their own tests

The `instances` stage writes each split to data/instances/{train,eval}.jsonl; the splits never share
an instance id.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import BeforeValidator, Field, field_validator, model_validator

from daggerlm.config.base import Section

SLICE = re.compile(r"^(\d*):(\d*)$")


class SyntheticSource(Section):
    """The synthetic family (`instances.synthetic`): its splits are disjoint whatever the seeds."""

    source: Literal["synthetic"] = "synthetic"
    n: int = Field(16, ge=1)
    """Number of instances."""
    seed: int = 0
    """Generator seed."""


class _Records(Section):
    """Records made elsewhere: which of them to take, and how the official ones run."""

    ids: list[str] | None = None
    """Only these instance ids (each must be there); None: all (or `slice`)."""
    slice: str | None = None
    """Only the records `start:stop` (Python's slice of the records, in their order), e.g. "0:50"."""
    official_images: bool = True
    """SWE-bench / SWE-Gym records that carry no `image` and no repository snapshot get their official
    image, eval script and log parser (by repository, `evaluation/swebench_repos.yaml`), so they run in
    Docker; False: records as given."""

    @field_validator("slice")
    @classmethod
    def _slice_shape(cls, value: str | None) -> str | None:
        if value is not None and not SLICE.match(value):
            raise ValueError(f"expected start:stop with non-negative integers, e.g. '0:50'")
        return value

    @model_validator(mode="after")
    def _one_selection(self):
        if self.ids is not None and self.slice is not None:
            raise ValueError("give ids or slice, not both")
        return self

    def bounds(self, n: int) -> tuple[int, int]:
        """(start, stop) of the records taken among `n`."""
        if self.slice is None:
            return 0, n
        start, stop = SLICE.match(self.slice).groups()  # type: ignore[union-attr]  (checked above)
        return int(start or 0), min(n, int(stop)) if stop else n


class FileSource(_Records):
    source: Literal["file"]
    path: str
    """A .jsonl / .json or .parquet file of instance records (`instances/load.py`); a record's
    `repo_snapshot` is relative to the file. A DVC dep of the `instances` stage."""


class HubSource(_Records):
    source: Literal["hf"]
    name: str
    """The dataset, e.g. princeton-nlp/SWE-bench_Verified or SWE-Gym/SWE-Gym (needs the hub or its cache)."""
    split: str = "test"
    """The dataset's split (SWE-Gym has only `train`)."""


class MutationSource(Section):
    source: Literal["mutation"]
    n: int = Field(ge=1)
    """Number of instances, shared out over `libraries` in their order (the first get one more)."""
    seed: int = 0
    """Which mutations are tried first (the same seed gives the same instances)."""
    libraries: list[str] | None = None
    """Libraries of `libraries_file` to mutate; None: all of them."""
    libraries_file: str | None = None
    """A YAML file of libraries in the shape of `instances/libraries.yaml` (None: that one). A user's
    file is a DVC dep of the `instances` stage."""
    cache: str = ".daggerlm/libraries"
    """Library sources, clean commits and validation results (reused across runs and seeds)."""
    workers: int = Field(2, ge=1)
    """Mutants validated at once."""


def _synthetic_by_default(value: object) -> object:
    """A split written without `source` (as params.yaml always did) is synthetic."""
    if isinstance(value, dict) and "source" not in value:
        return {"source": "synthetic", **value}
    return value


SplitConfig = Annotated[Union[SyntheticSource, FileSource, HubSource, MutationSource],
                        Field(discriminator="source"), BeforeValidator(_synthetic_by_default)]
"""One split's source (the `source` field picks which)."""


class InstancesConfig(Section):
    train: SplitConfig = SyntheticSource()
    """The instances rolled out in every iteration (the same ones each time, as in the paper)."""
    eval: SplitConfig = SyntheticSource()
    """The held-out instances the student is evaluated on after every iteration."""
    modules_per_repo: int = Field(2, ge=1, le=6)
    """Shape of the synthetic family: of synthetic splits and of the tiny student's pretraining corpus."""
    functions_per_module: int = Field(3, ge=1, le=5)
