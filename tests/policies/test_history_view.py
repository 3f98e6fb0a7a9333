"""The student's view of the history: the last turns only, or every action with the last observations in full."""

from daggerlm.actions import extract_action, observation_returncode, render_response, turns_of
from daggerlm.agent.scaffold import run_episode
from daggerlm.config import AgentConfig, RuntimeConfig
from daggerlm.evaluation import grade
from daggerlm.instances.synthetic import generate
from daggerlm.policies import make_policy
from daggerlm.policies.history_view import HistoryView, HistoryWindow, elide_observations, last_turns, student_view
from daggerlm.policies.oracle import gold_fix
from tests.helpers import CountingPolicy, ScriptedPolicy, WrongActionPolicy


class RecordingPolicy(CountingPolicy):
    """Keeps the messages each request showed the wrapped policy."""

    def __init__(self, policy):
        super().__init__(policy)
        self.seen = []

    def complete(self, requests):
        self.seen += [r.messages for r in requests]
        return super().complete(requests)


def _perturbed_episode(inst, tmp_path, teacher):
    """An episode with mistakes in it, so the history holds many observations of several kinds."""
    schedule = lambda t: "student" if t in (1, 3) else "teacher"  # noqa: E731
    return run_episode(inst, {"teacher": teacher, "student": WrongActionPolicy(7)}, schedule,
                       runtime=RuntimeConfig(workdir=str(tmp_path)), agent=AgentConfig(step_limit=20))


def test_elision_keeps_actions_return_codes_and_the_last_observations(tmp_path):
    inst = generate(1, "train", seed=5)[0]
    traj = _perturbed_episode(inst, tmp_path, make_policy("oracle"))
    messages = traj.messages
    full = turns_of(messages)
    assert len(full) >= 6
    assert elide_observations(messages, None) is messages
    assert elide_observations(messages, len(full) + 1) == messages
    for keep in (1, 3):
        view = elide_observations(messages, keep)
        assert len(view) == len(messages) and view[:2] == messages[:2]
        assert [m for m in view if m["role"] == "assistant"] == [m for m in messages if m["role"] == "assistant"]
        shown = turns_of(view)
        assert [observation_returncode(o) for _, o in shown] == [observation_returncode(o) for _, o in full]
        assert [o for _, o in shown[-keep:]] == [o for _, o in full[-keep:]]
        for (_, old), (_, new) in zip(full[:-keep], shown[:-keep]):
            body = old.split("<output>\n", 1)[1].rsplit("</output>", 1)[0] if "<output>" in old else ""
            if body.strip():
                assert f"({len(body.splitlines())} lines omitted)" in new and body not in new
            else:
                assert new == old  # nothing to omit: format errors and empty outputs stay as they are
    assert sum(len(m["content"]) for m in elide_observations(messages, 1)) < sum(len(m["content"]) for m in messages)


def test_a_policy_behind_the_view_sees_only_the_view_and_the_oracle_still_resolves(tmp_path):
    """The oracle needs only actions, return codes and the last observation, so behind a one-observation
    view it still recovers; what it was shown is exactly the elided history."""
    inst = generate(3, "train", seed=6)[2]
    recorder = RecordingPolicy(make_policy("oracle", undo="all", reshow=True))
    teacher = student_view(recorder, HistoryWindow(observations=1))
    assert isinstance(teacher, HistoryView) and teacher.identity.endswith("|keep_observations=1")
    assert student_view(recorder, HistoryWindow()) is recorder
    traj = _perturbed_episode(inst, tmp_path, teacher)
    assert grade(inst, traj.patch, RuntimeConfig(workdir=str(tmp_path)))["resolved"]
    teacher_turns = [t for t in traj.turns if t.actor == "teacher"]
    assert len(recorder.seen) == len(teacher_turns) >= 4
    for seen, turn in zip(recorder.seen, teacher_turns):
        assert seen == elide_observations(traj.messages[: turn.prefix_len], 1)
        assert extract_action(turn.label)


def test_a_window_of_turns_keeps_the_task_and_the_last_turns(tmp_path):
    inst = generate(1, "train", seed=5)[0]
    traj = _perturbed_episode(inst, tmp_path, make_policy("oracle"))
    messages = traj.messages[: traj.turns[-1].prefix_len]  # a state: it ends with an observation
    full = turns_of(messages)
    assert last_turns(messages, None) is messages and last_turns(messages, len(full)) == messages
    for keep in (1, 3):
        view = last_turns(messages, keep)
        assert view[:2] == messages[:2] and view[-1] == messages[-1] and turns_of(view) == full[-keep:]
    both = HistoryWindow(turns=3, observations=1)
    assert both.apply(messages) == elide_observations(last_turns(messages, 3), 1)
    assert str(both) == "keep_turns=3,keep_observations=1"


def test_in_a_window_of_two_turns_the_fix_after_an_undo_looks_like_the_first_fix(tmp_path):
    """After a wrong fix, the oracle (undo all, retest, reshow) undoes, runs the tests and shows the
    code again; through a two-turn window the student's state at the second fix is the one it saw
    at the first fix, so what it learned there applies again."""
    inst = generate(1, "train", seed=5)[0]
    fix = gold_fix(inst.patch)
    wrong = render_response("Fix.", f"sed -i '{fix.line}c\\{fix.new} + 1' ./{fix.file} && echo '# x' >> ./{fix.file}")
    teacher = make_policy("oracle", undo="all", reshow=True, retest=True)
    traj = run_episode(inst, {"student": ScriptedPolicy([wrong]), "teacher": teacher},
                       lambda t: "student" if t == 2 else "teacher",
                       runtime=RuntimeConfig(workdir=str(tmp_path)), agent=AgentConfig(step_limit=12))
    turns = traj.turns
    assert grade(inst, traj.patch, RuntimeConfig(workdir=str(tmp_path)))["resolved"]
    assert turns[7].action == teacher.fix_command(inst, fix) and turns[2].action != turns[7].action
    window = HistoryWindow(turns=2)
    first, retry = (turns_of(window.apply(traj.messages[: t.prefix_len])) for t in (turns[2], turns[7]))
    assert [a for a, _ in first] == [a for a, _ in retry] == [t.action for t in turns[:2]]
    assert first[-1] == retry[-1]  # the code shown, at base both times
    assert len(turns_of(traj.messages[: turns[7].prefix_len])) == 7
