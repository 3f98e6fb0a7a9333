"""Aggregation within a label budget, and each iteration's slice of the train split."""

import pandas as pd
import pytest

from daggerlm.dagger.aggregate import aggregate, read_parquet, write_parquet
from daggerlm.dagger.stages import train_slice
from daggerlm.errors import InputError
from daggerlm.instances import write_instances
from daggerlm.instances.synthetic import generate
from tests.conftest import tiny_params


def _labels(path, hashes, iteration):
    rows = [{"state_hash": h, "iteration": iteration, "actor": "teacher",
             "completion": [{"role": "assistant", "content": f"label {h}"}]} for h in hashes]
    write_parquet(path, pd.DataFrame(rows))
    return path


def test_budget_caps_new_states_with_a_sample_independent_of_row_order(tmp_path):
    first = aggregate(None, _labels(tmp_path / "l0.parquet", [f"s{i}" for i in range(10)], 0), tmp_path / "a0.parquet",
                      budget=4, seed=1)
    assert first["examples"] == first["new_examples"] == 4 and first["over_budget_dropped"] == 6
    hashes = ["s0", "s1"] + [f"t{i}" for i in range(8)]  # two states already labeled in iteration 0 (maybe)
    second = aggregate(tmp_path / "a0.parquet", _labels(tmp_path / "l1.parquet", hashes, 1), tmp_path / "a1.parquet",
                       budget=4, seed=2)
    merged = read_parquet(tmp_path / "a1.parquet")
    assert second["new_examples"] == 4 and len(merged) == 8 and merged["state_hash"].is_unique
    reversed_ = aggregate(tmp_path / "a0.parquet", _labels(tmp_path / "r1.parquet", hashes[::-1], 1),
                          tmp_path / "r1agg.parquet", budget=4, seed=2)
    assert set(read_parquet(tmp_path / "r1agg.parquet")["state_hash"]) == set(merged["state_hash"])
    assert reversed_["hash"] != "" and second["duplicates_dropped"] == reversed_["duplicates_dropped"]
    unlimited = aggregate(tmp_path / "a0.parquet", tmp_path / "l1.parquet", tmp_path / "u.parquet")
    assert unlimited["over_budget_dropped"] == 0 and unlimited["examples"] == 4 + unlimited["new_examples"]


def test_each_iteration_rolls_out_its_own_slice_of_the_train_split(tmp_path):
    p = tiny_params(tmp_path, **{"dagger.episodes_per_iteration": 3})
    train = generate(5, "train", seed=0)
    write_instances(tmp_path / "data" / "instances" / "train.jsonl", train)
    ids = [[i.instance_id for i in train_slice(p, k)] for k in range(3)]
    every = [i.instance_id for i in train]
    assert ids[0] == every[:3] and ids[1] == every[3:] + every[:1] and ids[2] == every[1:4]
    whole = tiny_params(tmp_path)
    assert [i.instance_id for i in train_slice(whole, 1)] == every
    with pytest.raises(InputError, match="episodes_per_iteration"):
        train_slice(tiny_params(tmp_path, **{"dagger.episodes_per_iteration": 6}), 0)
