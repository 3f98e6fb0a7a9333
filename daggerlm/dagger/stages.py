"""The pipeline's stages, each a function of (params[, iteration]) that reads and writes files under
`params.data`; `pipeline.STAGES` declares them (reads, deps, outs) and every entry point runs them from there.

    instances      data/instances/{train,eval}.jsonl
    init-model     data/checkpoints/iter_0    the tiny model built there, or a record of the base student.model
    rollout K      data/rollouts/iter_K/      student = checkpoint K, teacher via the label cache
    label K        data/labels/iter_K/        every visited state labeled (labels.parquet), scored by a served
                                              teacher where the objective needs its log-probs
    aggregate K    data/aggregated/iter_K/    aggregate K−1 ∪ labels K (within the label budget)
    evaluate-base  data/eval/base/            checkpoint 0 on the eval split
    train K        data/checkpoints/iter_K+1  fine-tuned on aggregate K
    evaluate K     data/eval/iter_K/          checkpoint K+1 on the eval split
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import yaml

from daggerlm.agent.runner import ItemRunner
from daggerlm.agent.trajectory import Trajectory
from daggerlm.config import Params
from daggerlm.dagger import curriculum
from daggerlm.dagger.aggregate import aggregate, write_parquet
from daggerlm.dagger.curriculum import rollout_budget
from daggerlm.dagger.label_cache import CachedTeacher, LabelCache
from daggerlm.dagger.layout import Layout
from daggerlm.dagger.relabel import relabel, teacher_usage
from daggerlm.dagger.rollout import collect_rollouts, read_trajectories, write_trajectories
from daggerlm.errors import InputError
from daggerlm.instances import Instance, load_instances, write_instances
from daggerlm.io import ResultStore, atomic_write_json, atomic_write_text
from daggerlm.policies import make_policy
from daggerlm.policies.base import Policy
from daggerlm.policies.checkpoints import CHECKPOINT_META, base_record, check_base, is_path, write_base_record
from daggerlm.policies.history_view import HistoryWindow
from daggerlm.serving.student import open_student


def layout(p: Params) -> Layout:
    return Layout(Path(p.data))


def checkpoint(p: Params, k: int) -> str:
    """The student that acts in iteration k: for k = 0 the initial model (the base that init-model
    recorded as checkpoint 0, else `student.model`), for k > 0 what iteration k−1 trained."""
    if k == 0 and (record := base_record(layout(p).checkpoint(0))):
        if record["base_model"] != p.student.model:
            raise InputError(f"{layout(p).checkpoint(0)}: records base {record['base_model']}, but student.model "
                             f"is {p.student.model}; run init-model again")
        return check_base(record, layout(p).checkpoint(0))
    path = p.student.model if k == 0 else str(layout(p).checkpoint(k))
    local = Path(path)
    if k > 0 or p.student.build_tiny or local.exists():  # otherwise a hub id
        if not ((local / "config.json").is_file() or (local / "adapter_config.json").is_file()):
            raise InputError(f"{path}: checkpoint not found (the student of iteration {k})")
    return path


def base_deps(p: Params) -> list[Path]:
    """init-model's deps outside the data layout: a user's base model given as a path (`checkpoints.is_path`:
    absolute, ./relative, or not shaped like a hub id's org/name), so DVC reruns it when those files change."""
    return [Path(p.student.model)] if not p.student.build_tiny and is_path(p.student.model) else []


def instance_deps(p: Params) -> list[Path]:
    """The instances stage's deps outside the data layout: a `file` source, a user's libraries file."""
    from daggerlm.instances.sources import source_deps

    return source_deps(p.instances)


def load_split(p: Params, split: str) -> list[Instance]:
    path = layout(p).instances(split)
    if not path.is_file():
        raise InputError(f"{path}: not found (run `daggerlm stage instances` first)")
    return load_instances(path)


def train_slice(p: Params, k: int) -> list[Instance]:
    """The train instances iteration k rolls out (all of them, or its slice of `episodes_per_iteration`)."""
    train, n = load_split(p, "train"), p.dagger.episodes_per_iteration
    if n is None:
        return train
    if n > len(train):
        raise InputError(f"dagger.episodes_per_iteration: {n} is more than the {len(train)} train instances")
    return [train[(k * n + i) % len(train)] for i in range(n)]


def teacher(p: Params) -> CachedTeacher:
    return CachedTeacher(make_policy(p.teacher.kind, **p.teacher.policy_kwargs()), LabelCache(p.dagger.label_cache))


@contextmanager
def evaluation_policy(p: Params, k: int) -> Iterator[tuple[Policy, str]]:
    """(policy, model name) that evaluation episodes use: the oracle, or the student of iteration k."""
    if p.evaluation.policy == "oracle":
        yield make_policy("oracle", **p.teacher.oracle_kwargs()), "oracle"
        return
    model = checkpoint(p, k)
    with open_student(p.student, model) as policy:
        yield policy, model


# --- stages -------------------------------------------------------------------------------------
def stage_params(p: Params) -> dict:
    """params.yaml with every default filled in, for DVC: it fails a stage whose declared param is not a
    key of the file it reads, and a user's params.yaml holds only what they changed. Every later stage
    reads this file, so what dvc.lock records is what the stage ran with."""
    atomic_write_text(layout(p).params(), resolved_params(p))
    return {"params": str(layout(p).params())}


def resolved_params(p: Params) -> str:
    text = yaml.safe_dump(p.model_dump(mode="json"), sort_keys=False, width=120)
    return "# params.yaml resolved by `daggerlm stage params` and `pipeline write`: do not edit\n" + text


def stage_instances(p: Params) -> dict:
    """Each split from its source (`instances.sources`: synthetic, file, hf, mutation), disjoint."""
    from daggerlm.instances.sources import materialize

    splits = materialize(p.instances, p.runtime)
    for split, items in splits.items():
        write_instances(layout(p).instances(split), items)
    return {split: len(items) for split, items in splits.items()}


def build_student(p: Params) -> dict:
    """The tiny student at `student.model`, built from a corpus of instances outside both splits
    (`training.tiny_student`), or reused when a build of the same recipe is there (`daggerlm build-student`)."""
    from daggerlm.training.tiny_student import build_tiny_student

    if not p.student.build_tiny:
        raise InputError(f"student.build_tiny is false: student.model {p.student.model} is used as it is")
    return build_tiny_student(p.student.model, p.student.tiny, student_corpus(p), runtime=p.runtime, agent=p.agent,
                              concurrency=p.dagger.concurrency, seed=p.seed, device=p.student.device)


def student_corpus(p: Params) -> list[Instance]:
    """The tiny student's corpus: synthetic instances outside both splits (their seed is apart from any split's)."""
    return list(_corpus(p.student.tiny.corpus_instances, p.seed + 10_000, p.instances.modules_per_repo,
                        p.instances.functions_per_module))


@functools.cache
def _corpus(n: int, seed: int, modules: int, functions: int) -> tuple[Instance, ...]:
    """Generated once per process and arguments (each instance builds a repository: 0.2 s), as every
    recipe hash of a base and its build ask for it."""
    from daggerlm.instances.synthetic import generate

    return tuple(generate(n, "train", seed, modules, functions))


def student_recipe(p: Params) -> str:
    """The hash a tiny-student build under `p` is stamped with (`training.tiny_student.student_recipe`)."""
    from daggerlm.training.tiny_student import student_recipe as recipe

    return recipe(p.student.tiny, student_corpus(p), agent=p.agent, seed=p.seed)


def stage_init_model(p: Params) -> dict:
    """The student of iteration 0, always as checkpoint 0 (init-model's declared out): with
    `student.build_tiny`, the tiny student (`build_student`); otherwise, or when it was built elsewhere,
    a record of the base `student.model` (a directory, with the hash of its files, or a hub id), not a copy of it."""
    out = layout(p).checkpoint(0)
    if not p.student.build_tiny:
        record = write_base_record(out, p.student.model)
        return {"model": p.student.model, "built": False, "content_hash": record["content_hash"]}
    result = build_student(p)
    if Path(p.student.model).resolve() != out.resolve():
        write_base_record(out, p.student.model)
    return result


def generation_budget(p: Params, k: int) -> int | None:
    """Rollout k's max new tokens per student turn under the length curriculum (None: it is off)."""
    return rollout_budget(p.train.objective.curriculum, p.student.sampling.max_new_tokens, k,
                          layout(p).curriculum(k - 1))


def stage_rollout(p: Params, k: int, runner: ItemRunner | None = None) -> dict:
    student = p.student
    if (budget := generation_budget(p, k)) is not None:
        student = student.model_copy(update={"sampling": student.sampling.model_copy(
            update={"max_new_tokens": budget})})
    with open_student(student, checkpoint(p, k)) as policy:
        stats = collect_rollouts(train_slice(p, k), policy, teacher(p), layout(p).rollouts(k), iteration=k,
                                 beta=p.dagger.beta.beta(k), seed=p.seed, runtime=p.runtime, agent=p.agent,
                                 concurrency=p.dagger.concurrency, rollin_turns=p.dagger.rollin_turns, runner=runner,
                                 max_failed_share=p.dagger.max_failed_share)
    return stats if budget is None else {**stats, "generation_budget": budget}


def stage_label(p: Params, k: int, runner: ItemRunner | None = None) -> dict:
    trajectories = read_trajectories(layout(p).rollouts(k) / "trajectories.jsonl")
    instances = {i.instance_id: i for i in load_split(p, "train")}
    labeled, rows = relabel(trajectories, instances, teacher(p), concurrency=p.dagger.concurrency, runner=runner,
                            max_failed_share=p.dagger.max_failed_share)
    scored = served_scores(p, rows)
    out = layout(p).labels(k)
    write_parquet(out / "labels.parquet", pd.DataFrame(rows))
    write_trajectories(out / "trajectories.jsonl", labeled)
    # counted from the labels' own meta, so a resumed stage counts the calls its first attempt made
    sources = [t.meta["label_meta"]["cache"] for traj in labeled for t in traj.turns if "label_meta" in t.meta]
    stats = {"iteration": k, "states": len(rows), "student_states": sum(r["actor"] == "student" for r in rows),
             "failed_trajectories": len(trajectories) - len(labeled),
             "teacher_calls": sources.count("miss"), "cache_hits": sources.count("hit"),
             "relabeled_differs": sum(r["actor"] == "student" and r["student_response"] != r["completion"][0]["content"]
                                      for r in rows),
             **teacher_usage(labeled, p.teacher.endpoint.price_input_per_mtok, p.teacher.endpoint.price_output_per_mtok),
             **scored}
    atomic_write_json(out / "stats.json", stats)
    return stats


def scores_with_labels(p: Params) -> bool:
    """Whether the label stage stores a served teacher's log-probs for training (`dagger.teacher_scores`)."""
    return bool(p.train.objective.teacher_needs()) and p.teacher.gives() == "top_k"


def served_scores(p: Params, rows: list[dict]) -> dict:
    """The served teacher's log-probs of each state as training will see it, added to the label rows."""
    if not scores_with_labels(p):
        return {}
    from transformers import AutoTokenizer

    from daggerlm.dagger.teacher_scores import score_states
    from daggerlm.serving.vllm import prompt_logprobs

    e = p.teacher.endpoint
    api_key = os.environ.get(e.api_key_env)

    def scorer(ids: list[int], k: int) -> dict:
        return dataclasses.asdict(prompt_logprobs(e.base_url, e.model, ids, k, api_key, e.timeout_s))

    return score_states(rows, AutoTokenizer.from_pretrained(checkpoint(p, 0)), HistoryWindow.of(p.student),
                        p.train.objective, scorer, LabelCache(p.dagger.label_cache), teacher(p).identity,
                        p.dagger.concurrency)


def stage_aggregate(p: Params, k: int) -> dict:
    lay = layout(p)
    previous = lay.aggregated(k - 1) / "train.parquet" if k > 0 else None
    merged = aggregate(previous, lay.labels(k) / "labels.parquet", lay.aggregated(k) / "train.parquet",
                       budget=p.dagger.labels_per_iteration, seed=p.seed + k)
    stats = {"iteration": k, **merged}
    atomic_write_json(lay.aggregated(k) / "stats.json", stats)
    return stats


def check_shippable(p: Params) -> None:
    """Episodes on other processes (`dagger.executor.kind: dask`) need policies that travel: served
    ones (over HTTP) and the oracle, not a model loaded in this process."""
    in_process = [f"{role}.kind hf" for role, kind in (("student", p.student.kind), ("teacher", p.teacher.kind))
                  if kind == "hf"]
    if in_process:
        raise InputError(f"dagger.executor.kind dask runs episodes on other processes, but {' and '.join(in_process)} "
                         "loads a model in this one: serve it (kind: openai) or use dagger.executor.kind threads")


def stage_train(p: Params, k: int) -> dict:
    """Fine-tune on aggregate k into checkpoint k+1: in this process, or under `accelerate launch`
    (`train.launch`) in several."""
    if p.train.launch:
        from daggerlm.dagger.launch import launched_train

        return launched_train(p, k)
    return train_in_process(p, k)


def checkpoint_meta(p: Params, k: int) -> dict:
    return json.loads((layout(p).checkpoint(k) / CHECKPOINT_META).read_text())


def train_in_process(p: Params, k: int) -> dict:
    from daggerlm.training.sft import train

    lay = layout(p)
    agg_stats = lay.aggregated(k) / "stats.json"
    if not agg_stats.is_file():
        raise InputError(f"{agg_stats}: not found (run the aggregate stage of iteration {k} first)")
    init = checkpoint(p, 0) if p.train.init_from == "base" else checkpoint(p, k)
    stored = None
    if scores_with_labels(p):
        from daggerlm.dagger.teacher_scores import stored_scores

        aggregate_file = lay.aggregated(k) / "train.parquet"
        stored = stored_scores(pd.read_parquet(aggregate_file), str(aggregate_file))
    return train(lay.aggregated(k) / "train.parquet", init, lay.checkpoint(k + 1), p.train, seed=p.seed + k,
                 aggregate_hash=json.loads(agg_stats.read_text())["hash"], base_model=checkpoint(p, 0),
                 window=HistoryWindow.of(p.student),
                 teacher_model=p.teacher.model if p.teacher.kind == "hf" else None, scores=stored)


def stage_evaluate(p: Params, k: int, runner: ItemRunner | None = None) -> dict:
    eval_split = load_split(p, "eval")
    metrics = _evaluate(p, k + 1, eval_split, layout(p).eval(k), runner)
    atomic_write_json(layout(p).curriculum(k), curriculum_record(p, k, {i.instance_id for i in eval_split}))
    return metrics


def stage_evaluate_base(p: Params, runner: ItemRunner | None = None) -> dict:
    """Checkpoint 0 on the eval split: where the iterations start from."""
    return _evaluate(p, 0, load_split(p, "eval"), layout(p).base_eval(), runner)


def _evaluate(p: Params, checkpoint_k: int, eval_split: list[Instance], out: Path, runner: ItemRunner | None) -> dict:
    from daggerlm.evaluation import evaluate

    with evaluation_policy(p, checkpoint_k) as (policy, name):
        return evaluate(eval_split, policy, out, runtime=p.runtime, agent=p.agent, concurrency=p.evaluation.concurrency,
                        model_name=name, seed=p.seed, runner=runner, max_failed_share=p.dagger.max_failed_share)


def curriculum_record(p: Params, k: int, eval_ids: set[str]) -> dict:
    """Evaluate k's `curriculum.json`: checkpoint k+1's mean token entropy on its eval actions and
    rollout k+1's budget (`dagger.curriculum`); constant while the curriculum is off."""
    c = p.train.objective.curriculum
    if c.kind == "none":
        return curriculum.OFF
    from daggerlm.training.entropy import mean_token_entropy

    examples = eval_actions(p, layout(p).eval(k), eval_ids)[: c.entropy_states]
    entropy = mean_token_entropy(checkpoint(p, k + 1), examples, p.student.device)
    return curriculum.record(c, p.student.sampling.max_new_tokens, generation_budget(p, k), entropy)


def eval_actions(p: Params, eval_dir: Path, eval_ids: set[str]) -> list[tuple[list[dict], list[dict]]]:
    """The evaluated student's actions in `eval_dir` as (prompt through its window, completion) examples,
    as training renders them (episodes of `eval_ids` only: a results store can hold others)."""
    window = HistoryWindow.of(p.student)
    results = ResultStore(eval_dir / "results").values()
    trajectories = [Trajectory.model_validate(r["trajectory"]) for r in results
                    if r["trajectory"]["instance_id"] in eval_ids]
    return [(window.apply(t.messages[: turn.prefix_len]), [{"role": "assistant", "content": turn.response}])
            for t in trajectories for turn in t.turns]


def stage_report(p: Params) -> list[dict]:
    """The per-iteration table from the stages' own stats files (what `dvc metrics/plots` show) and the
    trajectories' HTML inspector."""
    from daggerlm.dagger.inspect import write_inspector
    from daggerlm.report.table import base_row, iteration_row, markdown_table

    lay = layout(p)
    read = lambda path: json.loads(path.read_text())  # noqa: E731
    rows = [iteration_row(k, read(lay.rollouts(k) / "stats.json"), read(lay.labels(k) / "stats.json"),
                          read(lay.aggregated(k) / "stats.json"),
                          read(lay.checkpoint(k + 1) / "daggerlm_checkpoint.json"), read(lay.eval(k) / "metrics.json"),
                          read(lay.curriculum(k)) if lay.curriculum(k).is_file() else None)
            for k in range(p.dagger.iterations)]
    base = base_row(read(lay.base_eval() / "metrics.json"))
    atomic_write_json(lay.report() / "iterations.json", rows)
    atomic_write_json(lay.report() / "summary.json", {"base": base, "final": rows[-1], "iterations": len(rows)})
    atomic_write_text(lay.report() / "summary.md", markdown_table([base, *rows]))
    write_inspector(lay.root, lay.inspector())
    return rows
