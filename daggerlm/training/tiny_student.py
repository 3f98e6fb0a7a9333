"""The tiny student, built from nothing: a tokenizer trained on the family's text and oracle
episodes, random weights, then (with `pretrain_steps`) language-model pretraining on the same text.

Building it is the slow part of a first run (minutes of pretraining on CPU), so a finished build is
stamped with its recipe and a later build from the same recipe reuses it: `./setup.sh` builds the
default student once, as a real student arrives pretrained, and the pipeline's init-model finds it."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from daggerlm.agent.scaffold import run_episode
from daggerlm.config import AgentConfig, RuntimeConfig, TinyModelConfig
from daggerlm.instances.schema import Instance
from daggerlm.io import atomic_write_json, stable_hash
from daggerlm.policies import make_policy
from daggerlm.training.tiny_model import build_tiny_model


def corpus_document(inst: Instance) -> str:
    """An instance as one text: the issue, the repository's files, the fix."""
    files = "".join(f"# file: {path}\n{text}\n" for path, text in sorted(inst.repo_files.items()))
    return f"{inst.problem_statement}\n\n{files}\n{inst.patch}"


def student_recipe(cfg: TinyModelConfig, corpus: list[Instance], *, agent: AgentConfig, seed: int) -> str:
    """Hash of everything a build depends on: the model and tokenizer config, pretraining params, the
    corpus's text (not only its ids: a changed generator makes other text under the same ids), the
    seed, the agent that runs the corpus episodes and the oracle that acts in them."""
    return stable_hash({"tiny": cfg.model_dump(), "corpus": stable_hash([corpus_document(i) for i in corpus]),
                        "seed": seed, "agent": agent.model_dump(), "oracle": make_policy("oracle").version})


def build_tiny_student(out: str | Path, cfg: TinyModelConfig, corpus: list[Instance], *, runtime: RuntimeConfig,
                       agent: AgentConfig, concurrency: int, seed: int, device: str = "cpu") -> dict:
    """Build the student at `out` from `corpus` (instances outside both splits), unless a finished build
    of the same recipe is there; returns what was made."""
    out, oracle = Path(out), make_policy("oracle")
    recipe = student_recipe(cfg, corpus, agent=agent, seed=seed)
    meta_path = out / "daggerlm_checkpoint.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta.get("recipe") == recipe:
        return {"model": str(out), "built": True, "reused": True, "recipe": recipe, "parameters": meta["parameters"]}
    documents = [corpus_document(i) for i in corpus]

    def episode(inst: Instance) -> list[dict]:
        return run_episode(inst, {"teacher": oracle}, lambda t: "teacher", runtime=runtime, agent=agent).messages

    with ThreadPoolExecutor(concurrency) as pool:
        episodes = list(pool.map(episode, corpus[: cfg.corpus_episodes]))
    path = build_tiny_model(out, cfg, documents + [m["content"] for msgs in episodes for m in msgs], seed=seed)
    meta = json.loads((path / "daggerlm_checkpoint.json").read_text())
    result = {"model": str(path), "built": True, "recipe": recipe, "parameters": meta["parameters"]}
    if cfg.pretrain_steps:
        from transformers import AutoTokenizer

        from daggerlm.training.pretrain import pretrain

        chat = AutoTokenizer.from_pretrained(path)
        transcripts = [chat.apply_chat_template(msgs, tokenize=False) for msgs in episodes]
        result["pretrain"] = pretrain(path, documents + transcripts, steps=cfg.pretrain_steps,
                                      seq_len=cfg.pretrain_seq_len, batch_size=cfg.pretrain_batch_size,
                                      learning_rate=cfg.pretrain_learning_rate, seed=seed, device=device)
    atomic_write_json(meta_path, {**json.loads(meta_path.read_text()), "recipe": recipe})  # finished: reusable
    return result
