"""The distillation objectives benchmark: which prefix source, divergence and schedule distils a
language-model teacher best into a smaller student, at a fixed step budget?

Arms are `train.objective` configs of the same pipeline (the stages `daggerlm run` runs), every one
with targets: full (the `hf` teacher's whole next-token distribution):

    teacher-fkl     teacher prefix, forward KL: word-level distillation on the teacher's own rollouts (β = 1)
    teacher-rkl     teacher prefix, reverse KL: offline-RL-style distillation (β = 1)
    student-fkl     student prefix, forward KL: DAgger-style on-policy distillation (β = 0)
    student-rkl     student prefix, reverse KL: on-policy distillation, OPD (β = 0)
    mix-0.25/0.5/0.75   student prefix, α·FKL + (1−α)·RKL (*Decoupling KL and Trajectories*)
    curriculum      mix-0.75 with the entropy-gated length curriculum
    distil          student prefix, forward KL plus γ-discounted future disagreement (DistIL)

Each seed builds its own teacher and its own student base (the science check's lesson: one shared base
hides the largest variance there is): the teacher is the science check's base recipe (a 4-layer tiny LM
pretrained on a corpus whose oracle episodes teach it to resolve the synthetic bugs), the student a
smaller model of the same tokenizer (the same corpus, seed and vocabulary), pretrained as long.
Every arm runs the same iterations, episodes and epochs from the seed's student base (a fixed step
budget). Reported per arm: resolve rate on the held-out eval split (plain, and with every episode's
first edit slipped, as in the science check), the final student's token entropy on its own eval
actions beside the teacher's on the same tokens, the teacher's log-probability of the student's tokens,
generation length (tokens per action), teacher calls (turns the teacher acted or labeled).

    .venv/bin/python bench/objectives.py            # the default setting
    .venv/bin/python bench/objectives.py --quick    # < 10 min, a smoke test (its bases learn nothing)

Writes `objectives.json` (every number), `objectives.png` and `objectives.md` to --out. An interrupted
run resumes: finished bases and (seed, arm) runs are kept under --out/work (or --bases for the bases:
they are named by their whole recipe, so another bench's work dir can lend its bases). Seeds run apart (a
session or a machine each) join with `--merge A/objectives.json B/objectives.json --out DIR`; arms rerun
after a fix (`--arms ... --out NEW`) replace their runs with `--replace OLD/objectives.json NEW/objectives.json`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import sys
import time
from contextlib import nullcontext
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from statistics import mean, pstdev

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.science import (RECOVERY_VIEW, SANDBOXES, SlipFirstEdit, _digest, _limit_threads, _num,  # noqa: E402,F401
                           _pct, _recipe, evaluate_slipped, join_parts, run_iteration, stage_seconds, timed)
from bench.sft_precision import cpu_model_and_flags  # noqa: E402
from daggerlm.config import Params, load_params  # noqa: E402
from daggerlm.dagger import stages  # noqa: E402
from daggerlm.io import atomic_write_json, atomic_write_text, parse_overrides  # noqa: E402
from daggerlm.policies.oracle import Oracle  # noqa: E402

STUDENT_PREFIX = {"kind": "constant", "value": 0.0}
TEACHER_PREFIX = {"kind": "constant", "value": 1.0}
ARMS = {
    "teacher-fkl": ({"prefix": "teacher", "alpha": 1.0}, TEACHER_PREFIX),
    "teacher-rkl": ({"prefix": "teacher", "alpha": 0.0}, TEACHER_PREFIX),
    "student-fkl": ({"prefix": "student", "alpha": 1.0}, STUDENT_PREFIX),
    "student-rkl": ({"prefix": "student", "alpha": 0.0}, STUDENT_PREFIX),
    "mix-0.25": ({"prefix": "student", "alpha": 0.25}, STUDENT_PREFIX),
    "mix-0.5": ({"prefix": "student", "alpha": 0.5}, STUDENT_PREFIX),
    "mix-0.75": ({"prefix": "student", "alpha": 0.75}, STUDENT_PREFIX),
    "curriculum": ({"prefix": "student", "alpha": 0.75, "curriculum": "CURRICULUM"}, STUDENT_PREFIX),
    "distil": ({"prefix": "student", "alpha": 1.0, "gamma": 0.5}, STUDENT_PREFIX),
}
"""arm -> (train.objective without its targets, dagger.beta): the student-prefix arms train on the
student's own actions, so the student acts at every state (β = 0); the teacher-prefix arms on the
teacher's, in its own rollouts (β = 1). "CURRICULUM" stands for the setting's curriculum."""


@dataclass(frozen=True)
class Setting:
    iterations: int
    episodes: int
    """Train instances rolled out per iteration (a new slice each iteration)."""
    labels: int
    """Labeled states added to the aggregate per iteration (every arm trains on as many)."""
    eval_n: int
    epochs: float
    learning_rate: float
    seeds: tuple[int, ...]
    teacher: dict
    """`student.tiny` of the teacher's build (over the defaults and `corpus`)."""
    student: dict
    """`student.tiny` of the student's build: a smaller model, the same tokenizer."""
    corpus: dict
    """`student.tiny` both builds share: what makes their tokenizers one."""
    curriculum: dict
    params: dict = field(default_factory=dict)
    """Pipeline params of the setting (`--set` goes over them)."""


SMALL_STUDENT = {"hidden_size": 96, "intermediate_size": 288, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2}
SETTINGS = {
    # the teacher is the science check's base of the same setting (1000 steps: 50-80 % of eval resolved
    # alone, bench/README "Base variance"); the student a tenth of its parameters (half its width and
    # depth), pretrained as long: it resolves some of the eval split alone (seed 0: 25 %; 2000 steps: 17 %)
    "default": Setting(iterations=2, episodes=6, labels=24, eval_n=12, epochs=6, learning_rate=5e-4, seeds=(0, 1, 2),
                       teacher={"pretrain_steps": 1000}, student={**SMALL_STUDENT, "pretrain_steps": 1000},
                       corpus={"corpus_episodes": 160},
                       curriculum={"kind": "entropy", "start_tokens": 24, "growth": 2.0, "entropy_below": 1.0},
                       params=RECOVERY_VIEW),
    "quick": Setting(iterations=2, episodes=3, labels=12, eval_n=4, epochs=1, learning_rate=5e-4, seeds=(0,),
                     teacher={"pretrain_steps": 100}, student={**SMALL_STUDENT, "pretrain_steps": 20},
                     corpus={"corpus_episodes": 16},
                     curriculum={"kind": "entropy", "start_tokens": 16, "growth": 2.0, "entropy_below": 8.0},
                     params=RECOVERY_VIEW),
}
# the cheaper student that loses every resolve claim: 300 steps, 0 % alone and 0 % in every arm after
# 2 iterations (bench/results/objectives-weak-student, seed 0)
SETTINGS["weak-student"] = replace(SETTINGS["default"], student={**SMALL_STUDENT, "pretrain_steps": 300})


TEACHER = {"teacher.kind": "hf", "teacher.sampling": {"temperature": 0.0, "max_new_tokens": 64}}
"""A language-model teacher in the process (full distributions), greedy, with the student's turn length."""


def _tiny(s: Setting, role: str) -> dict:
    return {f"student.tiny.{key}": value for key, value in {**s.corpus, **getattr(s, role)}.items()}


def base_dir(s: Setting, role: str, seed: int, bases: Path, extra: dict) -> Path:
    """The seed's teacher or student base, named by the hash of its whole recipe (as the science check's:
    a base of the same recipe, built by either benchmark, is the same files)."""
    return bases / f"base-{_recipe(json.dumps({'seed': seed, **_tiny(s, role), **extra}), Oracle.version)}"


def seed_dir(s: Setting, seed: int, root: Path, bases: Path, extra: dict) -> Path:
    """Runs are reused only by the same setting, overrides, oracle and bases (other seeds aside)."""
    key = {**asdict(s), "seeds": None, "overrides": extra, "teacher_oracle": Oracle.version,
           "bases": [base_dir(s, role, seed, bases, extra).name for role in ("teacher", "student")]}
    return root / f"runs-{_digest(key)}" / f"seed_{seed}"


def arm_params(s: Setting, seed: int, arm: str, root: Path, bases: Path, extra: dict) -> Params:
    objective, beta = ARMS[arm]
    objective = {**objective, "targets": "full"}
    if objective.get("curriculum") == "CURRICULUM":
        objective["curriculum"] = s.curriculum
    return load_params(None, {
        "seed": seed, "data": str(seed_dir(s, seed, root, bases, extra) / arm),
        "student.model": str(base_dir(s, "student", seed, bases, extra)), **_tiny(s, "student"),
        "teacher.model": str(base_dir(s, "teacher", seed, bases, extra)), **TEACHER,
        "instances.train": {"n": s.episodes * s.iterations, "seed": seed},
        "instances.eval": {"n": s.eval_n, "seed": 1000},  # one held-out set for every seed and arm
        "dagger.iterations": s.iterations, "dagger.beta": beta, "train.objective": objective,
        "dagger.episodes_per_iteration": s.episodes, "dagger.labels_per_iteration": s.labels,
        "dagger.label_cache": str(seed_dir(s, seed, root, bases, extra) / "label_cache"),
        "train.sft.num_train_epochs": s.epochs, "train.sft.learning_rate": s.learning_rate,
        "runtime.workdir": str(SANDBOXES), "evaluation.concurrency": s.eval_n, "dagger.concurrency": s.episodes,
        **extra})


def base_params(s: Setting, role: str, seed: int, root: Path, bases: Path, extra: dict) -> Params:
    """Params that build the seed's teacher or student base (at `student.model`) and evaluate it alone."""
    return load_params(None, {
        "seed": seed, "data": str(seed_dir(s, seed, root, bases, extra) / f"{role}_base"),
        "student.model": str(base_dir(s, role, seed, bases, extra)), **_tiny(s, role),
        "instances.eval": {"n": s.eval_n, "seed": 1000}, "runtime.workdir": str(SANDBOXES),
        "evaluation.concurrency": s.eval_n, "dagger.concurrency": s.episodes,
        "teacher.model": str(base_dir(s, "teacher", seed, bases, extra)), **TEACHER, **extra})


def _evaluate_base(p: Params, role: str) -> dict:
    """Build (or reuse by recipe) the base at p.student.model and evaluate it alone on the eval split as it
    acts in the arms: the teacher greedy with its whole history in view, the student through its window."""
    from daggerlm.evaluation import evaluate
    from daggerlm.policies import make_policy

    start = time.monotonic()
    built = stages.stage_init_model(p)
    built_s = None if built.get("reused") else round(time.monotonic() - start, 1)  # None: built by an earlier run
    out = Path(p.data) / "eval"
    if not (out / "metrics.json").is_file():
        stages.stage_instances(p)
        acting = (nullcontext(make_policy("hf", **p.teacher.policy_kwargs())) if role == "teacher"
                  else stages.open_student(p.student, p.student.model))
        with acting as policy:
            evaluate(stages.load_split(p, "eval"), policy, out, runtime=p.runtime, agent=p.agent,
                     concurrency=p.evaluation.concurrency, model_name=p.student.model, seed=p.seed)
    metrics = json.loads((out / "metrics.json").read_text())
    record = json.loads((stages.layout(p).checkpoint(0) / "daggerlm_checkpoint.json").read_text())
    pretrain = Path(p.student.model) / "pretrain.json"
    return {"recipe": built["recipe"], "content_hash": record["content_hash"], "parameters": built["parameters"],
            "pretrain_loss": json.loads(pretrain.read_text())["loss_last"] if pretrain.is_file() else None,
            "build_s": built_s,
            "resolve_rate": metrics["resolve_rate"], "n_eval": metrics["n_instances"]}


def seed_bases(job: tuple) -> dict:
    """The seed's teacher and student base, built in this worker (or reused by recipe), each evaluated
    alone; they must share one tokenizer (`check_same_tokenizer`)."""
    from daggerlm.policies.hf import load_model_and_tokenizer
    from daggerlm.training.objective_trainer import check_same_tokenizer

    s, seed, root, bases, extra = job
    done = seed_dir(s, seed, root, bases, extra) / "bases.json"
    if done.is_file():
        return json.loads(done.read_text())
    known = {"seed": seed, **{role: _evaluate_base(base_params(s, role, seed, root, bases, extra), role)
                              for role in ("teacher", "student")}}
    teacher, student = (str(base_dir(s, role, seed, bases, extra)) for role in ("teacher", "student"))
    check_same_tokenizer(load_model_and_tokenizer(student, "cpu")[1], load_model_and_tokenizer(teacher, "cpu")[1],
                         teacher)
    atomic_write_json(done, known)
    return known


def token_stats(p: Params, k: int) -> dict:
    """On the final student's eval actions: its token entropy and the teacher's on the same tokens, the
    teacher's log-probability of the student's tokens, the tokens per action."""
    from daggerlm.training.entropy import completion_token_stats

    cache = Path(p.data) / f"token_stats_{k}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    lay = stages.layout(p)
    examples = stages.eval_actions(p, lay.eval(k), {i.instance_id for i in stages.load_split(p, "eval")})
    student = completion_token_stats(str(lay.checkpoint(k + 1)), examples, p.student.device)
    teacher = completion_token_stats(p.teacher.model, examples, p.teacher.device)
    result = {"student_entropy": student["entropy"], "teacher_entropy": teacher["entropy"],
              "student_logp": student["logp"], "teacher_logp": teacher["logp"],
              "generation_tokens": student["tokens"] / max(1, len(examples)), "actions": len(examples)}
    atomic_write_json(cache, result)
    return result


def rollout_tokens(p: Params, k: int) -> float | None:
    """Mean tokens per student action in rollout k: the generation the curriculum budgets."""
    from transformers import AutoTokenizer

    from daggerlm.dagger.rollout import read_trajectories

    responses = [turn.response for t in read_trajectories(stages.layout(p).rollouts(k) / "trajectories.jsonl")
                 for turn in t.turns if turn.actor == "student"]
    if not responses:
        return None
    tokenizer = AutoTokenizer.from_pretrained(p.student.model)
    return mean(len(tokenizer(r, add_special_tokens=False).input_ids) for r in responses)


def iteration_result(p: Params, k: int) -> dict:
    lay = stages.layout(p)
    read = lambda path: json.loads(path.read_text())  # noqa: E731
    metrics, rollout, labels = (read(lay.eval(k) / "metrics.json"), read(lay.rollouts(k) / "stats.json"),
                                read(lay.labels(k) / "stats.json"))
    trained = read(lay.checkpoint(k + 1) / "daggerlm_checkpoint.json")
    curriculum = read(lay.curriculum(k)) if lay.curriculum(k).is_file() else {}
    return {"iteration": k, "resolve_rate": metrics["resolve_rate"], "n_eval": metrics["n_instances"],
            "teacher_calls": labels["states"],  # its label of every visited state, its own actions among them
            "rollout_tokens": rollout_tokens(p, k), "train_steps": trained["steps"],
            "loss_after": trained["loss_after"], "generation_budget": curriculum.get("budget"),
            "curriculum_entropy": curriculum.get("student_entropy"),
            "behaviour_known": trained.get("behaviour_known")}  # DistIL: share of tokens its clip could use


def arm_run(job: tuple) -> dict:
    """Every iteration of one (seed, arm) from the seed's student base, then its final measures."""
    s, seed, arm, root, bases, extra = job
    p = arm_params(s, seed, arm, root, bases, extra)
    done = seed_dir(s, seed, root, bases, extra) / f"{arm}.json"
    if not done.is_file():
        start = time.monotonic()
        shutil.rmtree(p.data, ignore_errors=True)  # an interrupted run starts again from iteration 0
        stages.stage_instances(p)
        stages.stage_init_model(p)  # checkpoint 0: a record of the seed's student base
        for k in range(s.iterations):
            run_iteration(p, k)
        atomic_write_json(done, {"wall_s": round(time.monotonic() - start, 1)})
    last = s.iterations - 1
    iterations = [iteration_result(p, k) for k in range(s.iterations)]
    slipped = timed(p, f"eval_slipped_{last}", lambda: evaluate_slipped(p, last))
    tokens = timed(p, "token_stats", lambda: token_stats(p, last))
    return {"seed": seed, "arm": arm, "objective": p.train.objective.model_dump(mode="json"),
            "beta": p.dagger.beta.model_dump(mode="json"), "iterations": iterations,
            "slipped_resolve_rate": slipped["resolve_rate"], **tokens,
            "teacher_calls": sum(it["teacher_calls"] for it in iterations),
            "rollout_tokens": mean(it["rollout_tokens"] for it in iterations if it["rollout_tokens"] is not None)
            if any(it["rollout_tokens"] is not None for it in iterations) else None,
            "wall_s": json.loads(done.read_text())["wall_s"], "seconds": stage_seconds(p)}


MEASURES = ("resolve_rate", "slipped_resolve_rate", "student_entropy", "teacher_entropy", "teacher_logp",
            "generation_tokens", "rollout_tokens", "teacher_calls")


def _stat(values: list[float | None]) -> dict:
    """Mean and std over the seeds that have the measure (a teacher-prefix arm has no student rollout tokens)."""
    known = [v for v in values if v is not None]
    return {"mean": mean(known) if known else None, "std": pstdev(known) if known else None, "per_seed": values}


def summarize(runs: list[dict]) -> dict:
    """Per arm, each measure of the final students: mean, std and per-seed values."""
    out = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = sorted((r for r in runs if r["arm"] == arm), key=lambda r: r["seed"])
        rows = [{**r, "resolve_rate": r["iterations"][-1]["resolve_rate"]} for r in mine]
        out[arm] = {m: _stat([row[m] for row in rows]) for m in MEASURES}
        out[arm]["generation_budget"] = [[it["generation_budget"] for it in r["iterations"]] for r in mine]
    return out


def claims(summary: dict) -> dict:
    """The papers' claims, each judged on the seed means against the seed spread."""
    def m(arm: str, measure: str) -> float:
        return summary[arm][measure]["mean"]

    def spread(measure: str, *arms: str) -> float:
        return max(summary[a][measure]["std"] for a in arms)

    def judged(holds: bool, *arms: str) -> bool | None:
        """None when no compared student resolves anything: a tie at 0 judges nothing."""
        return holds if any(m(a, "resolve_rate") > 0 for a in arms) else None

    out = {}
    if {"student-rkl", "student-fkl"} <= summary.keys():
        rkl, fkl = (m(a, "student_entropy") - m(a, "teacher_entropy") for a in ("student-rkl", "student-fkl"))
        out["reverse KL lowers the student's entropy below the teacher's, forward KL keeps it"] = {
            "student_minus_teacher_entropy": {"student-rkl": rkl, "student-fkl": fkl},
            "holds": rkl < 0 and abs(fkl) < abs(rkl)}
    mixes = [a for a in ("student-rkl", "mix-0.25", "mix-0.5", "mix-0.75", "student-fkl") if a in summary]
    if "mix-0.75" in summary and len(mixes) > 1:
        best = max(mixes, key=lambda a: m(a, "resolve_rate"))
        out["forward-heavy mixing is best or tied"] = {
            "resolve_by_alpha": {a: m(a, "resolve_rate") for a in mixes}, "best": best,
            "holds": judged(m(best, "resolve_rate") - m("mix-0.75", "resolve_rate")
                            <= spread("resolve_rate", best, "mix-0.75"), *mixes)}
    if {"curriculum", "mix-0.75"} <= summary.keys():
        shorter = m("curriculum", "rollout_tokens") < m("mix-0.75", "rollout_tokens")
        tied = abs(m("curriculum", "resolve_rate") - m("mix-0.75", "resolve_rate")) <= spread(
            "resolve_rate", "curriculum", "mix-0.75")
        out["the curriculum shortens generations at equal resolve rate"] = {
            "rollout_tokens": {a: m(a, "rollout_tokens") for a in ("curriculum", "mix-0.75")},
            "resolve": {a: m(a, "resolve_rate") for a in ("curriculum", "mix-0.75")},
            "holds": judged(shorter and tied, "curriculum", "mix-0.75")}
    return out


def markdown(summary: dict, bases: list[dict], s: Setting) -> str:
    def ms(row: dict, pct: bool = False) -> str:
        if row["mean"] is None:
            return "–"
        return f"{_pct(row['mean'])} ± {_pct(row['std'])}" if pct else f"{row['mean']:.2f} ± {row['std']:.2f}"

    lines = ["Each seed's bases, alone on the eval split:", "",
             "| seed | teacher: pretraining loss | teacher resolves | student: pretraining loss | student resolves |",
             "|---" * 5 + "|"]
    lines += [f"| {b['seed']} | {_num(b['teacher']['pretrain_loss'])} | {_pct(b['teacher']['resolve_rate'])} | "
              f"{_num(b['student']['pretrain_loss'])} | {_pct(b['student']['resolve_rate'])} |" for b in bases]
    lines += ["", f"Final students after {s.iterations} iterations, {len(s.seeds)} seeds (mean ± std), "
              f"{s.eval_n} eval instances, {s.labels} labels per iteration:", "",
              "| arm | resolve | first edit slipped | student entropy | teacher entropy (same tokens) | teacher "
              "log-prob of student tokens | tokens per action (eval) | tokens per action (rollouts) | teacher calls |",
              "|---" * 9 + "|"]
    for arm, row in summary.items():
        lines.append(f"| {arm} | {ms(row['resolve_rate'], True)} | {ms(row['slipped_resolve_rate'], True)} | "
                     f"{ms(row['student_entropy'])} | {ms(row['teacher_entropy'])} | {ms(row['teacher_logp'])} | "
                     f"{ms(row['generation_tokens'])} | {ms(row['rollout_tokens'])} | "
                     f"{row['teacher_calls']['mean']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(summary)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = (("resolve rate (plain, first edit slipped hatched)", ("resolve_rate", "slipped_resolve_rate")),
              ("token entropy: student, teacher (hatched) on its tokens", ("student_entropy", "teacher_entropy")),
              ("tokens per action: eval, rollouts (hatched)", ("generation_tokens", "rollout_tokens")))
    for ax, (title, measures) in zip(axes, panels):
        width = 0.8 / len(measures)
        for j, measure in enumerate(measures):
            for x, arm in enumerate(arms):
                row = summary[arm][measure]
                if row["mean"] is None:
                    continue
                ax.bar(x + (j - (len(measures) - 1) / 2) * width, row["mean"], width, color=f"C{x % 10}",
                       alpha=0.6, hatch="//" if j else None, yerr=row["std"], capsize=2)
        ax.set_xticks(range(len(arms)), arms, rotation=45, ha="right")
        ax.set_title(title, fontsize=10)
    axes[0].set_ylim(0, 1)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def run(s: Setting, arms: list[str], extra: dict, out: Path, bases: Path | None = None, jobs: int | None = None,
        setting: str = "") -> dict:
    jobs = jobs or max(1, min(os.cpu_count() or 1, len(s.seeds) * len(arms)))
    root = (out / "work").resolve()
    bases = (bases or root).resolve()
    SANDBOXES.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_limit_threads,
                             initargs=(threads,)) as pool:
        built = list(pool.map(seed_bases, [(s, seed, root, bases, extra) for seed in s.seeds]))
        print("bases: " + "; ".join(f"seed {b['seed']}: teacher {_pct(b['teacher']['resolve_rate'])}, student "
                                    f"{_pct(b['student']['resolve_rate'])}" for b in built), flush=True)
        runs = []
        for r in pool.map(arm_run, [(s, seed, arm, root, bases, extra) for arm in arms for seed in s.seeds]):
            runs.append(r)
            print(f"{r['arm']} seed {r['seed']}: resolve {r['iterations'][-1]['resolve_rate']:.2f}, entropy "
                  f"{r['student_entropy']:.2f} (teacher {r['teacher_entropy']:.2f}), {r['wall_s']:.0f} s", flush=True)
    summary = summarize(runs)
    report = {"bench": "objectives", "setting": setting, **asdict(s), "arms": arms, "overrides": extra,
              "machine": platform.platform(), "cpu": cpu_model_and_flags(), "cpus": os.cpu_count(), "jobs": jobs,
              "wall_s": round(time.monotonic() - start, 1), "bases": built, "summary": summary,
              "claims": claims(summary), "runs": runs}
    write_report(report, s, out)
    return report


SETTING_FIELDS = tuple(f.name for f in fields(Setting))


def setting_of(report: dict) -> Setting:
    return Setting(**{**{name: report[name] for name in SETTING_FIELDS}, "seeds": tuple(report["seeds"])})


def merge(parts: list[Path], out: Path) -> dict:
    """One report from runs of the same setting, arms and overrides on disjoint seeds, summarized again."""
    report = join_parts(parts, SETTING_FIELDS)
    s = setting_of(report)
    summary = summarize(report["runs"])
    report = {**report, **asdict(s), "summary": summary, "claims": claims(summary)}
    write_report(report, s, out)
    return report


def replace_arms(report_path: Path, rerun_path: Path, out: Path) -> dict:
    """The report with the rerun's arms (the same setting and seeds, after a fix) in place of its own
    runs of them, summarized and judged again; `replaced` records what and from where."""
    report, rerun = (json.loads(path.read_text()) for path in (report_path, rerun_path))
    if differ := [k for k in SETTING_FIELDS if report[k] != rerun[k]]:
        raise SystemExit(f"{rerun_path}: {', '.join(differ)} differ from {report_path}'s: rerun arms of one setting")
    arms = sorted({r["arm"] for r in rerun["runs"]})
    runs = [r for r in report["runs"] if r["arm"] not in arms] + rerun["runs"]
    summary = summarize(runs)
    report = {**report, "runs": runs, "summary": summary, "claims": claims(summary),
              "replaced": [*report.get("replaced", []), {"arms": arms, "from": str(rerun_path),
                                                         "wall_s": rerun["wall_s"]}]}
    write_report(report, setting_of(report), out)
    return report


def write_report(report: dict, s: Setting, out: Path) -> None:
    atomic_write_json(out / "objectives.json", report)
    table = markdown(report["summary"], report["bases"], s)
    atomic_write_text(out / "objectives.md", table)
    plot(report["summary"], out / "objectives.png")
    print(table)
    print(json.dumps(report["claims"], indent=2))
    print(f"wall time {report['wall_s']:.0f} s; wrote {out}/objectives.{{json,md,png}}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--setting", choices=list(SETTINGS), default="default")
    ap.add_argument("--quick", action="store_true", help="--setting quick (< 10 min)")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--seeds", type=int, nargs="+", help="override the setting's seeds")
    ap.add_argument("--jobs", type=int, help="runs in parallel, torch threads split between them")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a pipeline param for every arm (YAML value)")
    ap.add_argument("--bases", type=Path, help="where bases are built or reused by recipe (default: OUT/work; "
                    "the science check's work dir lends its bases: the teacher is its recipe)")
    ap.add_argument("--merge", type=Path, nargs="+", metavar="OBJECTIVES.json",
                    help="join objectives.json files of one setting on disjoint seeds into --out's report")
    ap.add_argument("--replace", type=Path, nargs=2, metavar=("REPORT.json", "RERUN.json"),
                    help="the report with RERUN's arms (rerun on its setting and seeds) in place of its own, to --out")
    ap.add_argument("--out", type=Path, help="default: bench/results/objectives-SETTING")
    a = ap.parse_args()
    if a.merge:
        merge(a.merge, a.out or Path("bench/results/objectives-merged"))
        return
    if a.replace:
        replace_arms(*a.replace, a.out or a.replace[0].parent)
        return
    a.setting = "quick" if a.quick else a.setting
    s = SETTINGS[a.setting]
    s = Setting(**{**asdict(s), "seeds": tuple(a.seeds or s.seeds)})
    out = a.out or Path(f"bench/results/objectives-{a.setting}")
    run(s, a.arms, {**s.params, **parse_overrides(a.set)}, out, a.bases, a.jobs, a.setting)


if __name__ == "__main__":
    main()
