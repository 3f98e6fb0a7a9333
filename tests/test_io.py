"""ResultStore: items reused by key; a report reads every finished item."""

from daggerlm.io import ResultStore


def test_values_lists_every_finished_item_whatever_its_key(tmp_path):
    store = ResultStore(tmp_path / "results")
    store.put("repo/b", "key-1", {"n": 2})
    store.put("a", "key-2", {"n": 1})
    (tmp_path / "results" / ".c.json.123.tmp").write_text("{")  # an interrupted write is not an item
    assert store.get("a", "key-2") == {"n": 1} and store.get("a", "other") is None
    assert store.values() == [{"n": 1}, {"n": 2}]
