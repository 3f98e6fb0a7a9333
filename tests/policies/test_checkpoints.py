"""Cache identities change when the thing they name changes: checkpoint weights, the serving endpoint."""

import json
import shutil

from daggerlm.dagger.label_cache import CachedTeacher, LabelCache
from daggerlm.policies import make_policy
from daggerlm.policies.base import Completion, PolicyRequest
from daggerlm.policies.checkpoints import CHECKPOINT_META, checkpoint_fingerprint


def _checkpoint(path, weights: bytes, meta: dict):
    path.mkdir()
    (path / "model.safetensors").write_bytes(weights)
    (path / "tokenizer.json").write_text('{"vocab": {}}')
    (path / CHECKPOINT_META).write_text(json.dumps(meta))
    return str(path)


def test_same_metadata_with_different_weights_is_another_checkpoint(tmp_path):
    meta = {"parameters": 1000, "data_hash": "abc"}
    a = _checkpoint(tmp_path / "a", b"\x00" * 64, meta)
    b = _checkpoint(tmp_path / "b", b"\x01" + b"\x00" * 63, meta)  # same size, one byte differs
    assert checkpoint_fingerprint(a) != checkpoint_fingerprint(b)
    copy = tmp_path / "copy"
    shutil.copytree(a, copy)
    (copy / CHECKPOINT_META).write_text(json.dumps({**meta, "train_seconds": 12.3}))  # metadata only differs
    assert checkpoint_fingerprint(str(copy)) == checkpoint_fingerprint(a)
    (tmp_path / "a" / "tokenizer.json").write_text('{"vocab": {"x": 0}}')  # the tokenizer counts too
    assert checkpoint_fingerprint(a) != checkpoint_fingerprint(str(copy))


def test_a_different_base_url_misses_the_label_cache(tmp_path, eval_instances):
    def teacher(base_url):
        return make_policy("openai", base_url=base_url, model="same-name")

    one, other = teacher("http://127.0.0.1:8001/v1"), teacher("http://127.0.0.1:8002/v1")
    assert one.identity != other.identity
    cache = LabelCache(tmp_path / "cache")
    request = PolicyRequest(eval_instances[0], [{"role": "user", "content": "fix it"}], {})
    first, second = CachedTeacher(one, cache), CachedTeacher(other, cache)
    cache.put(first.key(request), Completion("THOUGHT: cached\n```bash\nls\n```", {}))
    assert cache.get(first.key(request)) is not None
    assert cache.get(second.key(request)) is None
    assert cache.get(CachedTeacher(teacher("http://127.0.0.1:8001/v1"), cache).key(request)) is not None
