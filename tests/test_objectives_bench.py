"""bench/objectives.py's arms and bookkeeping: every arm a valid config of the pipeline, bases never
shared across seeds, per-arm summaries, the papers' claims judged against the seed spread, table and plot."""

import importlib.util
import json
import sys

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("objectives", REPO / "bench" / "objectives.py")
objectives = sys.modules["objectives"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(objectives)
from bench import science  # noqa: E402  (objectives imports it so)


def test_every_arm_is_a_valid_pipeline_config_of_its_cell(tmp_path):
    s = objectives.SETTINGS["quick"]
    for arm in objectives.ARMS:
        p = objectives.arm_params(s, 0, arm, tmp_path, tmp_path, s.params)
        o = p.train.objective
        assert (p.teacher.kind, o.targets, p.teacher.gives()) == ("hf", "full", "full")
        assert p.dagger.beta.beta(1) == (1.0 if o.prefix == "teacher" else 0.0)  # the prefix's own rollouts
        assert p.student.model != p.teacher.model and p.student.tiny.hidden_size < 256
    cells = {arm: objectives.arm_params(s, 0, arm, tmp_path, tmp_path, {}).train.objective for arm in objectives.ARMS}
    assert {(o.prefix, o.alpha) for o in cells.values()} >= {("teacher", 1), ("teacher", 0), ("student", 1),
                                                            ("student", 0), ("student", 0.25), ("student", 0.5)}
    assert cells["curriculum"].curriculum.kind == "entropy" and cells["mix-0.75"].curriculum.kind == "none"
    assert cells["distil"].gamma > 0 and all(o.gamma == 0 for a, o in cells.items() if a != "distil")


def test_each_seed_has_its_own_teacher_and_student_and_the_teacher_is_the_science_base(tmp_path):
    s = objectives.SETTINGS["quick"]
    names = {(role, seed): objectives.base_dir(s, role, seed, tmp_path, s.params)
             for role in ("teacher", "student") for seed in (0, 1)}
    assert len(set(names.values())) == 4
    quick = science.SETTINGS["quick"]
    assert names[("teacher", 1)] == science.base_dir(quick, 1, tmp_path, quick.params)  # one recipe, one base
    runs = {seed: objectives.seed_dir(s, seed, tmp_path, tmp_path, s.params) for seed in (0, 1)}
    assert runs[0] != runs[1]


def _run(arm, seed, resolve, entropy, teacher_entropy=1.0, rollout_tokens=30.0):
    return {"arm": arm, "seed": seed,
            "iterations": [{"resolve_rate": 0.0, "generation_budget": 16},
                                                  {"resolve_rate": resolve, "generation_budget": 32}],
            "slipped_resolve_rate": resolve / 2, "student_entropy": entropy, "teacher_entropy": teacher_entropy,
            "teacher_logp": -entropy, "generation_tokens": 20.0, "teacher_calls": 12,
            "rollout_tokens": None if arm.startswith("teacher") else rollout_tokens}


def _runs(curriculum_tokens=12.0, rkl_entropy=0.5, best_mix=0.75):
    rates = {"student-rkl": 0.2, "mix-0.25": 0.3, "mix-0.5": 0.4, "mix-0.75": 0.5, "student-fkl": 0.45}
    rates[{0.75: "mix-0.75", 0.25: "mix-0.25"}[best_mix]] = 0.9
    runs = [_run(arm, seed, rate + 0.02 * seed, rkl_entropy if arm == "student-rkl" else 1.05)
            for arm, rate in rates.items() for seed in (0, 1)]
    runs += [_run("teacher-fkl", seed, 0.3, 1.0) for seed in (0, 1)]
    return runs + [_run("curriculum", seed, rates["mix-0.75"] + 0.02 * seed, 1.0, rollout_tokens=curriculum_tokens)
                   for seed in (0, 1)]


def test_the_claims_are_judged_on_seed_means_and_spread(tmp_path):
    summary = objectives.summarize(_runs())
    assert summary["mix-0.5"]["resolve_rate"]["mean"] == pytest.approx(0.41)
    assert summary["mix-0.5"]["resolve_rate"]["std"] == pytest.approx(0.01)
    assert summary["teacher-fkl"]["rollout_tokens"] == {"mean": None, "std": None, "per_seed": [None, None]}
    claims = objectives.claims(summary)
    assert [c["holds"] for c in claims.values()] == [True, True, True]
    flipped = objectives.claims(objectives.summarize(_runs(curriculum_tokens=40.0, rkl_entropy=1.5, best_mix=0.25)))
    assert [c["holds"] for c in flipped.values()] == [False, False, False]
    assert flipped["forward-heavy mixing is best or tied"]["best"] == "mix-0.25"
    nothing = [{**r, "iterations": [{**it, "resolve_rate": 0.0} for it in r["iterations"]]} for r in _runs()]
    assert [c["holds"] for c in objectives.claims(objectives.summarize(nothing)).values()] == [True, None, None]
    table = objectives.markdown(summary, [{"seed": 0, "teacher": {"pretrain_loss": 0.1, "resolve_rate": 0.7},
                                           "student": {"pretrain_loss": 0.9, "resolve_rate": 0.1}}],
                                objectives.SETTINGS["quick"])
    assert "| 0 | 0.100 | 70% | 0.900 | 10% |" in table
    same = "| 1.00 ± 0.00 | 1.00 ± 0.00 | -1.00 ± 0.00 | 20.00 ± 0.00 |"
    assert f"| curriculum | 91% ± 1% | 46% ± 1% {same} 12.00" in table
    assert f"| teacher-fkl | 30% ± 0% | 15% ± 0% {same} – |" in table
    objectives.plot(summary, tmp_path / "objectives.png")
    assert (tmp_path / "objectives.png").read_bytes()[:4] == b"\x89PNG"


def test_parts_on_disjoint_seeds_merge_into_the_report_of_all_their_runs(tmp_path):
    s = objectives.SETTINGS["quick"]
    runs = _runs()
    parts = []
    for seed, wall in ((0, 100.0), (1, 50.0)):
        mine = [r for r in runs if r["seed"] == seed]
        base = {"seed": seed, "teacher": {"pretrain_loss": 0.1, "resolve_rate": 0.7},
                "student": {"pretrain_loss": 0.9, "resolve_rate": 0.1}}
        report = {"bench": "objectives", **objectives.asdict(s), "seeds": [seed], "arms": list(objectives.ARMS),
                  "overrides": s.params, "machine": "m", "cpu": "c", "jobs": 2, "wall_s": wall, "bases": [base],
                  "summary": objectives.summarize(mine), "runs": mine}
        (tmp_path / f"part{seed}.json").write_text(json.dumps(report))
        parts.append(tmp_path / f"part{seed}.json")
    merged = objectives.merge(parts, tmp_path / "out")
    assert list(merged["seeds"]) == [0, 1] and merged["wall_s"] == 150.0 and len(merged["bases"]) == 2
    assert merged["summary"] == objectives.summarize(runs)  # as if one run had made them all
    assert [c["holds"] for c in merged["claims"].values()] == [True, True, True]
    assert (tmp_path / "out" / "objectives.png").is_file()
    with pytest.raises(SystemExit, match="seeds \\[0, 0\\] repeat"):
        objectives.merge([parts[0], parts[0]], tmp_path / "bad")


def test_a_rerun_of_some_arms_replaces_their_runs_and_the_claims_are_judged_again(tmp_path):
    s = objectives.SETTINGS["quick"]
    report = {"bench": "objectives", **objectives.asdict(s), "seeds": [0, 1], "wall_s": 10.0, "bases": [],
              "runs": _runs()}
    rerun = {**report, "wall_s": 3.0, "runs": [_run("curriculum", seed, 0.5 + 0.02 * seed, 1.0, rollout_tokens=40.0)
                                               for seed in (0, 1)]}
    for name, r in (("report", report), ("rerun", rerun)):
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
    before = objectives.claims(objectives.summarize(report["runs"]))
    after = objectives.replace_arms(tmp_path / "report.json", tmp_path / "rerun.json", tmp_path / "out")
    assert sum(r["arm"] == "curriculum" for r in after["runs"]) == 2 and len(after["runs"]) == len(report["runs"])
    assert after["summary"]["curriculum"]["rollout_tokens"]["mean"] == 40.0
    key = "the curriculum shortens generations at equal resolve rate"
    assert before[key]["holds"] and not after["claims"][key]["holds"]
    assert after["replaced"] == [{"arms": ["curriculum"], "from": str(tmp_path / "rerun.json"), "wall_s": 3.0}]
    (tmp_path / "other.json").write_text(json.dumps({**rerun, "iterations": 5}))
    with pytest.raises(SystemExit, match="iterations differ"):
        objectives.replace_arms(tmp_path / "report.json", tmp_path / "other.json", tmp_path / "bad")
