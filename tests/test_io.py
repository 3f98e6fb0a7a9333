"""ResultStore: items reused by key; a report reads every finished item."""

from daggerlm.io import ResultStore


def test_values_lists_every_finished_item_whatever_its_key(tmp_path):
    store = ResultStore(tmp_path / "results")
    store.put("repo/b", "key-1", {"n": 2})
    store.put("a", "key-2", {"n": 1})
    (tmp_path / "results" / ".c.json.123.tmp").write_text("{")  # an interrupted write is not an item
    assert store.get("a", "key-2") == {"n": 1} and store.get("a", "other") is None
    assert store.values() == [{"n": 1}, {"n": 2}]


def test_an_items_seconds_are_kept_beside_it_not_in_it(tmp_path):
    """Two runs of the same item differ only in their wall-clock seconds: those go to .timings/NAME.json
    (which .dvcignore leaves out of DVC's hashes), so the item's own file is the same."""
    stores = [ResultStore(tmp_path / run) for run in ("a", "b")]
    for store, seconds in zip(stores, (1.5, 2.5)):
        store.put("x", "k", {"n": 1, "timings": {"wall_s": seconds}})
    assert (tmp_path / "a" / "x.json").read_bytes() == (tmp_path / "b" / "x.json").read_bytes()
    assert stores[1].get("x", "k") == {"n": 1, "timings": {"wall_s": 2.5}}
    assert stores[1].values() == [{"n": 1, "timings": {"wall_s": 2.5}}]
    (tmp_path / "a" / ".timings" / "x.json").unlink()  # a `dvc pull` brings no seconds: the item still reads
    assert stores[0].values() == [{"n": 1}]
