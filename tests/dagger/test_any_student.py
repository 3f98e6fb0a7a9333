"""Any student: a user's own model (a directory made outside the pipeline: Qwen2 architecture, Qwen's
chat template) goes through every stage with LoRA. Checkpoint 0 is a record of that base (its path and
the hash of its files), not a copy; each later checkpoint is an adapter on it; DVC finds init-model's
out and re-runs it when the base's files change."""

import json
import shutil
import subprocess

import pandas as pd
import pytest
import torch

from daggerlm.dagger import pipeline
from daggerlm.dagger.stages import checkpoint, layout, stage_init_model
from daggerlm.errors import InputError
from daggerlm.policies import PolicyRequest, make_policy
from daggerlm.policies.checkpoints import CHECKPOINT_META, checkpoint_fingerprint
from daggerlm.policies.hf import chat_ids, load_model_and_tokenizer
from daggerlm.training.chat_masks import encode_example
from tests.conftest import tiny_params
from tests.dagger.test_loop import run_recording_reads, undeclared
from tests.pipeline.project import make_project
from tests.user_model import save_user_model

LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"}


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    return save_user_model(tmp_path_factory.mktemp("user") / "my-qwen")


def _overrides(model) -> dict:
    return {"student.model": str(model), "student.build_tiny": False, "train.mode": "lora", "train.lora": LORA,
            "train.sft": {"num_train_epochs": 1, "logging_steps": 50, "disable_tqdm": True},
            "student.sampling": {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 16},
            "instances.train": {"n": 2, "seed": 1}, "instances.eval": {"n": 2, "seed": 1}, "agent.step_limit": 6}


def test_a_users_model_trains_by_lora_through_every_stage(tmp_path, user_model, monkeypatch):
    p = tiny_params(tmp_path, **_overrides(user_model))
    rows, reads = run_recording_reads(p, monkeypatch)
    assert [r["iteration"] for r in rows] == [0, 1]
    for name, seen in reads.items():
        assert not undeclared(pipeline.BY_NAME[name], seen), f"{name} reads {undeclared(pipeline.BY_NAME[name], seen)}"

    lay = layout(p)
    # checkpoint 0: the base, named and hashed, no weights copied
    assert [f.name for f in lay.checkpoint(0).iterdir()] == [CHECKPOINT_META]
    record = json.loads((lay.checkpoint(0) / CHECKPOINT_META).read_text())
    assert record["kind"] == "base" and record["base_model"] == str(user_model) and record["local"] is True
    assert record["content_hash"] == checkpoint_fingerprint(str(user_model)) and len(record["content_hash"]) == 12
    assert checkpoint(p, 0) == str(user_model)

    # one adapter per iteration, each on the user's base, and it loads and acts
    base, _ = load_model_and_tokenizer(str(user_model))
    probe = torch.tensor([[1, 5, 9, 17, 33]])
    for k in (1, 2):
        adapter = json.loads((lay.checkpoint(k) / "adapter_config.json").read_text())
        assert adapter["base_model_name_or_path"] == str(user_model)
        assert not (lay.checkpoint(k) / "model.safetensors").exists()
        meta = json.loads((lay.checkpoint(k) / CHECKPOINT_META).read_text())
        assert meta["kind"] == "lora" and meta["base_model"] == str(user_model) and meta["steps"] >= 1
        model, _ = load_model_and_tokenizer(str(lay.checkpoint(k)))
        assert not torch.allclose(model(probe).logits, base(probe).logits)  # the adapter is applied
    policy = make_policy("hf", model=str(lay.checkpoint(2)), sampling=p.student.sampling)
    [out] = policy.complete([PolicyRequest(None, [{"role": "user", "content": "fix it"}], {}, seed=0)])
    assert out.meta["completion_tokens"] >= 1
    for k in (0, 1):
        assert json.loads((lay.eval(k) / "metrics.json").read_text())["n_instances"] == 2

    # what train fed TRL for a state with the student's own earlier action in it: only the label is trained
    frame = pd.read_parquet(lay.aggregated(1) / "train.parquet")
    row = next(r for r in frame.itertuples() if sum(m["role"] == "assistant" for m in r.prompt) >= 2)
    prompt, completion = [dict(m) for m in row.prompt], [dict(m) for m in row.completion]
    _, tokenizer = load_model_and_tokenizer(str(lay.checkpoint(2)))
    ids, mask = encode_example(tokenizer, prompt, completion)
    trained = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    assert trained == completion[0]["content"] + "<|im_end|>"
    assert ids[: mask.index(1)] == chat_ids(tokenizer, prompt, add_generation_prompt=True)
    context = tokenizer.decode(ids[: mask.index(1)])
    actions = [m["content"] for m in prompt if m["role"] == "assistant"]
    assert all(f"<|im_start|>assistant\n{a}<|im_end|>" in context for a in actions)  # seen, not trained


def test_checkpoint_0_is_the_recorded_base_while_its_files_are_unchanged(tmp_path, user_model):
    base = shutil.copytree(user_model, tmp_path / "base")
    p = tiny_params(tmp_path, **_overrides(base))
    assert stage_init_model(p)["content_hash"] == checkpoint_fingerprint(str(base))
    assert checkpoint(p, 0) == str(base)
    as_checkpoint = make_policy("hf", model=str(layout(p).checkpoint(0)))  # the record opens as its base
    assert as_checkpoint.identity == make_policy("hf", model=str(base)).identity
    assert pipeline.stage("init-model").param_deps(p) == [base]

    with pytest.raises(InputError, match=r"records base .*/base, but student.model is .*/other; run init-model"):
        checkpoint(tiny_params(tmp_path, **_overrides(tmp_path / "other")), 0)
    (base / "generation_config.json").write_text("{}")
    with pytest.raises(InputError, match=r"base: changed since init-model recorded it"):
        checkpoint(p, 0)
    stage_init_model(p)
    assert checkpoint(p, 0) == str(base)

    hub = tiny_params(tmp_path, **_overrides("someone/their-model"))  # nothing cached, no network: the id alone
    assert stage_init_model(hub)["content_hash"] is None and checkpoint(hub, 0) == "someone/their-model"
    assert pipeline.stage("init-model").param_deps(hub) == []
    with pytest.raises(InputError, match=r"nope: expected a model directory or a hub id"):
        stage_init_model(tiny_params(tmp_path, **_overrides(tmp_path / "nope")))
    with pytest.raises(InputError, match=r"init-model's own output"):
        stage_init_model(tiny_params(tmp_path, **_overrides(layout(p).checkpoint(0))))


def test_dvc_runs_init_model_and_reruns_it_when_the_base_changes(tmp_path, user_model):
    base = shutil.copytree(user_model, tmp_path / "base")
    project, p, env = make_project(tmp_path, **_overrides(base))

    def dvc(*args: str) -> str:
        r = subprocess.run(["dvc", *args], cwd=project, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"dvc {' '.join(args)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r.stdout + r.stderr

    stage = yaml_stage(project, "init-model")
    assert stage["deps"] == [str(base)] and stage["outs"] == ["data/checkpoints/iter_0"]
    dvc("repro", "init-model")  # it used to fail: "output 'data/checkpoints/iter_0' does not exist"
    record = json.loads((project / "data" / "checkpoints" / "iter_0" / CHECKPOINT_META).read_text())
    assert record["content_hash"] == checkpoint_fingerprint(str(base))
    assert "up to date" in dvc("status", "init-model")
    dvc("repro", "instances")
    dry = dvc("repro", "--dry", "rollout@0")  # (--dry stops at the first stage whose deps are not made yet)
    assert "Stage 'init-model' didn't change" in dry and "Running stage 'rollout@0'" in dry
    dag = dvc("dag", "--dot")  # the whole graph is consistent; checkpoint 0 feeds rollout 0 and every train
    assert all(f'"init-model" -> "{name}"' in dag for name in ("rollout@0", "train@0", "train@1"))
    (base / "generation_config.json").write_text("{}")
    status = dvc("status", "init-model")
    assert "changed deps" in status and str(base) in status


def yaml_stage(project, name: str) -> dict:
    import yaml

    return yaml.safe_load((project / "dvc.yaml").read_text())["stages"][name]
