"""bench/science.py's bookkeeping: per-arm summaries over seeds, the verdict against BC, table and plot."""

import importlib.util
import json
import subprocess
import sys

from daggerlm.actions import render_response
from daggerlm.agent.scaffold import run_episode
from daggerlm.config import AgentConfig
from daggerlm.evaluation import grade
from daggerlm.policies.oracle import Oracle, gold_fix
from daggerlm.config import TinyModelConfig
from tests.conftest import REPO, TINY
from tests.helpers import ScriptedPolicy

spec = importlib.util.spec_from_file_location("science", REPO / "bench" / "science.py")
science = sys.modules["science"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(science)


def _run(arm, seed, rates, setbacks, recovered):
    rows = [{"iteration": k, "beta": 1.0 if k == 0 else 0.5, "resolve_rate": r, "setbacks": b, "recovered": c,
             "labels_total": 10 * (k + 1), "student_labels": 0 if arm == "bc" else 3 * k, "train_steps": 5 * (k + 1),
             "recovery_labels": 0 if arm == "bc" else k + seed, "corrections": 0 if arm == "bc" else 2 * k,
             "agreement": {"tests failed, another change": {"agree": 0 if arm == "bc" else seed, "total": 2}} if b else {},
             "actions": {"tests failed, another change": {"edit": 2} if arm == "bc" else {"edit": 2 - seed, "undo": seed}},
             "train_fit": {"search, at base": {"agree": 3 + seed, "total": 5}} if k == len(rates) - 1 else {},
             "format_error_rate": 0.1} for k, (r, b, c) in enumerate(zip(rates, setbacks, recovered))]
    return {"arm": arm, "seed": seed, "iterations": rows}


def test_summary_verdict_table_and_plot(tmp_path):
    runs = [_run("bc", 0, [0.2, 0.3], [4, 4], [0, 1]), _run("bc", 1, [0.2, 0.1], [2, 4], [0, 0]),
            _run("dagger-exp", 0, [0.2, 0.6], [4, 5], [0, 3]), _run("dagger-exp", 1, [0.2, 0.5], [2, 3], [0, 2])]
    summary = science.summarize(runs)
    bc, dagger = summary["bc"][-1], summary["dagger-exp"][-1]
    assert abs(bc["resolve_mean"] - 0.2) < 1e-9 and abs(bc["resolve_std"] - 0.1) < 1e-9
    assert bc["resolve_per_seed"] == [0.3, 0.1] and (bc["setbacks"], bc["recovered"]) == (8, 1)
    assert dagger["recovery_rate"] == 5 / 8 and summary["bc"][0]["recovery_rate"] == 0.0
    assert dagger["agreement"] == {"tests failed, another change": {"agree": 1, "total": 4}}  # summed over seeds
    assert dagger["actions"] == {"tests failed, another change": {"edit": 3, "undo": 1}}  # keys joined over seeds
    verdict = science.verdict(summary)["dagger-exp"]
    assert abs(verdict["minus_bc"] - 0.35) < 1e-9 and verdict["beats_bc_beyond_spread"]
    close = science.verdict(science.summarize(runs[:2] + [_run("on-policy", 0, [0.2, 0.35], [1, 1], [0, 0]),
                                                           _run("on-policy", 1, [0.2, 0.15], [1, 1], [0, 0])]))
    assert not close["on-policy"]["beats_bc_beyond_spread"]  # within the seed spread
    table = science.markdown(summary, science.SETTINGS["quick"])
    assert "| dagger-exp | 1, 0.5 | 55% ± 5% | 60% / 50% | 62% (5/8) | 20 (15%) | 2 / 2 | 1 / 2 | 10 |" in table
    assert "| tests failed, another change | 0/4 | 1/4 |" in table
    assert "| search, at base | 7/10 | 7/10 |" in table.split("Training labels")[1]  # summed over seeds
    actions = table.split('What the final students did at "tests failed, another change"')[1]
    assert "| edit | 4 | 3 |" in actions and "| undo | 0 | 1 |" in actions
    science.plot(summary, tmp_path / "science.png")
    assert (tmp_path / "science.png").read_bytes()[:4] == b"\x89PNG"


def test_the_slipped_evaluation_is_summarized_judged_and_tabled(tmp_path):
    def slipped(run, rate, setbacks, recovered, undo):
        acts = {"tests failed, another change": {"undo": undo, "edit": setbacks - undo}}
        return {**run, "slipped": {"resolve_rate": rate, "setbacks": setbacks, "recovered": recovered,
                                   "recovery_rate": recovered / setbacks, "actions": acts}}

    runs = [slipped(_run("bc", 0, [0.2, 0.5], [4, 4], [0, 1]), 0.0, 5, 0, 0),
            slipped(_run("bc", 1, [0.2, 0.5], [2, 4], [0, 0]), 0.1, 5, 1, 0),
            slipped(_run("dagger-exp", 0, [0.2, 0.5], [4, 5], [0, 3]), 0.4, 6, 3, 4),
            slipped(_run("dagger-exp", 1, [0.2, 0.5], [2, 3], [0, 2]), 0.2, 4, 1, 2)]
    summary = science.summarize(runs)
    assert summary["dagger-exp"][-1]["slipped"]["recovered"] == 4 and summary["bc"][-1]["slipped"]["setbacks"] == 10
    verdict = science.verdict(summary)["dagger-exp"]
    assert not verdict["beats_bc_beyond_spread"]  # equal without the slip
    assert abs(verdict["slipped_minus_bc"] - 0.25) < 1e-9 and abs(verdict["slipped_seed_spread"] - 0.1) < 1e-9
    assert verdict["slipped_beats_bc_beyond_spread"]
    table = science.markdown(summary, science.SETTINGS["quick"]).split("first edit slipped")[1]
    assert "| bc | 5% ± 5% | 0% / 10% | 10% (1/10) | 0/10 |" in table
    assert "| dagger-exp | 30% ± 10% | 40% / 20% | 40% (4/10) | 6/10 |" in table
    unslipped = science.summarize([{k: v for k, v in r.items() if k != "slipped"} for r in runs[:3]] + runs[3:])
    assert "slipped" not in unslipped["dagger-exp"][-1]  # only where every seed has it
    science.plot(summary, tmp_path / "science.png")
    assert (tmp_path / "science.png").read_bytes()[:4] == b"\x89PNG"


def test_bases_are_keyed_by_the_resolved_student_config(tmp_path):
    """A base pretrained under other student settings (an override, or a changed default) is never reused."""
    s, window = science.SETTINGS["quick"], TinyModelConfig().pretrain_seq_len
    base = science.base_dir(s, 0, tmp_path, {})
    assert base == science.base_dir(s, 0, tmp_path, {"dagger.concurrency": 2})  # not a student setting
    assert base == science.base_dir(s, 0, tmp_path, {"student.tiny.pretrain_seq_len": window})  # the default, spelled out
    assert base != science.base_dir(s, 0, tmp_path, {"student.tiny.pretrain_seq_len": window * 2})
    assert base != science.base_dir(s, 0, tmp_path, {"instances.modules_per_repo": 3})  # other corpus text


def test_two_seeds_never_share_a_base_nor_runs_on_it(tmp_path, monkeypatch):
    """Each seed pretrains its own base; a new oracle (whose episodes are in the corpus) builds new
    bases, and the runs are keyed by their base."""
    s = science.SETTINGS["quick"]
    bases = {seed: science.base_dir(s, seed, tmp_path, {}) for seed in (0, 1, 2)}
    assert len(set(bases.values())) == 3
    params = {seed: science.arm_params(s, seed, "bc", tmp_path, {}) for seed in (0, 1)}
    assert {seed: p.student.model for seed, p in params.items()} == {seed: str(bases[seed]) for seed in (0, 1)}
    runs = science.seed_dir(s, 0, tmp_path, {})
    monkeypatch.setattr(Oracle, "version", Oracle.version + "-next")
    assert science.base_dir(s, 0, tmp_path, {}) != bases[0]
    assert science.seed_dir(s, 0, tmp_path, {}) != runs


def test_the_slipped_evaluation_runs_real_episodes_once(tmp_path, monkeypatch):
    """With the oracle as the evaluated policy every first edit slips, every episode meets a setback,
    and the oracle's recovery (undo, retest, show the code, fix again) resolves them all."""
    from daggerlm.config import load_params
    from daggerlm.dagger import stages
    from daggerlm.instances import write_instances
    from daggerlm.instances.synthetic import generate

    (tmp_path / "sandboxes").mkdir()
    p = load_params(None, {"data": str(tmp_path / "run"), "evaluation.policy": "oracle", "evaluation.concurrency": 3,
                           "teacher.oracle_undo": "all", "teacher.oracle_reshow": True,
                           "teacher.oracle_retest": True, "runtime.workdir": str(tmp_path / "sandboxes")})
    write_instances(stages.layout(p).instances("eval"), generate(3, "eval", seed=5))
    slipped = science.evaluate_slipped(p, 2)
    assert (slipped["resolve_rate"], slipped["setbacks"], slipped["recovered"]) == (1.0, 3, 3)
    assert slipped["actions"][science.SETBACK_STATE] == {"undo": 3}
    monkeypatch.setattr(stages, "evaluation_policy", None)  # a finished evaluation is read back, not run again
    assert science.evaluate_slipped(p, 2) == slipped


def test_the_first_edit_slips_and_the_fix_after_an_undo_does_not(eval_instances, runtime):
    """The slip breaks the module the first edit names, so the tests fail even after the right fix;
    undone and fixed again, the episode resolves."""
    inst = eval_instances[0]
    fix, test = Oracle.fix_command(inst, gold_fix(inst.patch)), Oracle.test_command(inst)
    script = [fix, test, "git reset -q --hard && git clean -fdq", fix, test]
    student = science.SlipFirstEdit(ScriptedPolicy([render_response("Go.", a) for a in script]))
    episode = run_episode(inst, {"student": student}, lambda t: "student", runtime=runtime,
                          agent=AgentConfig(step_limit=len(script)))
    turns = episode.turns
    assert turns[0].action == f"{fix} && {science.SLIP} ./{gold_fix(inst.patch).file}" and turns[3].action == fix
    assert turns[1].returncode != 0 and turns[4].returncode == 0
    assert grade(inst, episode.patch, runtime)["resolved"]


def test_stage_times_keep_the_first_run_and_average_over_seeds(tmp_path):
    p = science.load_params(None, {"data": str(tmp_path)})
    assert science.timed(p, "train_1", lambda: 7) == 7
    first = science.stage_seconds(p)["train_1"]
    science.timed(p, "train_1", lambda: __import__("time").sleep(0.05))  # a resumed stage keeps the first time
    science.timed(p, "eval_1", lambda: __import__("time").sleep(0.05))
    assert science.stage_seconds(p)["train_1"] == first and science.stage_seconds(p)["eval_1"] >= 0.05
    runs = [{"arm": "bc", "seconds": {"train_1": 10.0}}, {"arm": "bc", "seconds": {"train_1": 20.0, "eval_1": 4.0}},
            {"arm": "dagger-exp"}]
    assert science.mean_seconds(runs) == {"bc": {"train_1": 15.0, "eval_1": 4.0}, "dagger-exp": {}}


def test_each_seed_builds_its_own_base_and_fine_tunes_it_in_one_invocation(tmp_path):
    """The whole benchmark at toy size: every seed's base is pretrained and evaluated alone, then
    fine-tuned, in worker processes of one invocation (forked workers of a process that had used torch
    deadlocked in their first op). The JSON records each base."""
    tiny = {**TINY, "pretrain_steps": 3}
    cmd = [sys.executable, str(REPO / "bench" / "science.py"), "--quick", "--seeds", "0", "1", "--arms", "bc",
           "--iterations", "1", "--jobs", "2", "--out", str(tmp_path), "--set", f"student.tiny={json.dumps(tiny)}",
           "--set", "train.sft.num_train_epochs=1"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "science.json").read_text())
    bases = report["bases"]
    assert [b["seed"] for b in bases] == [0, 1] and len({b["recipe"] for b in bases}) == 2
    assert len({b["content_hash"] for b in bases}) == 2 and all(b["pretrain_loss"] > 0 for b in bases)
    assert all(b["n_eval"] == science.SETTINGS["quick"].eval_n for b in bases)
    assert sorted(p.name for p in (tmp_path / "work").glob("base-*")) == sorted(f"base-{b['recipe']}" for b in bases)
    assert [r["iterations"][0]["train_steps"] > 0 for r in report["runs"]] == [True, True]
    assert "| mean ± std |" in (tmp_path / "science.md").read_text()


def test_verify_compares_the_base_and_every_resolve_rate_within_the_stated_tolerance():
    def report(loss, base_rate, rates, slipped):
        return {"eval_n": 20, "bases": [{"seed": 1, "pretrain_loss": loss, "resolve_rate": base_rate}],
                "runs": [{"seed": 1, "arm": "bc", "iterations": [{"resolve_rate": r} for r in rates],
                          "slipped": {"resolve_rate": slipped}},
                         {"seed": 0, "arm": "bc", "iterations": [{"resolve_rate": 0.0}], "slipped": {"resolve_rate": 0}}]}

    published = report(0.180, 0.35, [0.40, 0.50], 0.20)
    same = science.compare(published, report(0.180, 0.35, [0.40, 0.50], 0.20), 1, "bc")
    assert [w for w, *_ in same] == ["base pretraining loss", "base resolve rate", "iteration 0 resolve rate",
                                     "iteration 1 resolve rate", "final, first edit slipped"]
    assert all(ok for *_, ok in same)
    near = science.compare(published, report(0.189, 0.45, [0.30, 0.60], 0.10), 1, "bc")  # 2 instances off
    assert all(ok for *_, ok in near)
    far = science.compare(published, report(0.195, 0.35, [0.40, 0.65], 0.20), 1, "bc")
    assert [ok for *_, ok in far] == [False, True, True, False, True]


def _report(seeds, wall_s, **setting):
    s = science.Setting(**{**science.asdict(science.SETTINGS["quick"]), "seeds": tuple(seeds), **setting})
    runs = [_run(arm, seed, [0.2, 0.1 * (seed + 1)], [2, 2], [0, 1]) for arm in ("bc", "dagger-exp") for seed in seeds]
    bases = [{"seed": seed, "pretrain_loss": 0.1, "resolve_rate": 0.5, "n_eval": 6, "content_hash": "ab" * 8}
             for seed in seeds]
    return {**science.asdict(s), "arms": ["bc", "dagger-exp"], "overrides": {}, "machine": "m", "cpu": "c", "jobs": 2,
            "wall_s": wall_s, "bases": bases, "runs": runs}


def test_runs_on_disjoint_seeds_merge_into_one_report_and_nothing_else_does(tmp_path):
    """Seeds run in separate sessions (or machines) report together only when their recipe is one."""
    parts = []
    for name, seeds, wall in (("a", [0, 1], 100.0), ("b", [2], 50.0), ("c", [1], 10.0)):
        parts.append(tmp_path / f"{name}.json")
        parts[-1].write_text(json.dumps(_report(seeds, wall)))
    merged = science.merge(parts[:2], tmp_path / "out")
    assert list(merged["seeds"]) == [0, 1, 2] and merged["wall_s"] == 150.0 and len(merged["merged_from"]) == 2
    everything = [_run(arm, seed, [0.2, 0.1 * (seed + 1)], [2, 2], [0, 1]) for arm in ("bc", "dagger-exp")
                  for seed in (0, 1, 2)]
    assert merged["summary"] == json.loads(json.dumps(science.summarize(everything)))
    assert json.loads((tmp_path / "out" / "science.json").read_text())["bases_summary"]["resolving_any"] == 3
    assert "| 2 | 0.100 | 50% (3/6) |" in (tmp_path / "out" / "science.md").read_text()
    try:
        science.merge([parts[0], parts[2]], tmp_path / "bad")
        raise AssertionError("seeds that repeat merged")
    except SystemExit as e:
        assert "seeds [0, 1, 1] repeat" in str(e)
    parts[2].write_text(json.dumps(_report([5], 10.0, epochs=3)))
    try:
        science.merge([parts[0], parts[2]], tmp_path / "bad")
        raise AssertionError("two recipes merged")
    except SystemExit as e:
        assert str(e).startswith(f"{parts[2]}: epochs differ from {parts[0]}'s")
