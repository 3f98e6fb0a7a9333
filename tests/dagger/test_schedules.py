import pytest
from pydantic import ValidationError

from daggerlm.config import BetaSchedule
from daggerlm.dagger.schedules import coin_schedule


@pytest.mark.parametrize("schedule, expected", [
    (BetaSchedule(kind="constant", value=0.3), [0.3, 0.3, 0.3, 0.3]),
    (BetaSchedule(kind="linear", decay=0.4), [1.0, 0.6, 0.2, 0.0]),
    (BetaSchedule(kind="exponential", p=0.5), [1.0, 0.5, 0.25, 0.125]),
    (BetaSchedule(kind="exponential", p=0.0), [1.0, 0.0, 0.0, 0.0]),  # pure on-policy after iteration 0
    (BetaSchedule(kind="floored_linear", decay=0.2, floor=0.6), [1.0, 0.8, 0.6, 0.6]),
])
def test_beta_schedules(schedule, expected):
    assert [round(schedule.beta(k), 6) for k in range(4)] == expected


def test_beta_out_of_range_is_rejected():
    with pytest.raises(ValidationError):
        BetaSchedule(kind="constant", value=1.5)


def test_coin_is_seeded_by_run_iteration_instance_and_turn():
    a = coin_schedule(0, 1, "inst-a", 0.5)
    assert [a(t) for t in range(50)] == [coin_schedule(0, 1, "inst-a", 0.5)(t) for t in range(50)]
    assert [a(t) for t in range(50)] != [coin_schedule(0, 2, "inst-a", 0.5)(t) for t in range(50)]
    assert [a(t) for t in range(50)] != [coin_schedule(1, 1, "inst-a", 0.5)(t) for t in range(50)]
    draws = [coin_schedule(3, 0, f"i{n}", 0.3)(t) for n in range(100) for t in range(20)]
    assert 0.25 < draws.count("teacher") / len(draws) < 0.35
    assert {coin_schedule(0, 0, "x", 1.0)(t) for t in range(30)} == {"teacher"}
    assert {coin_schedule(0, 0, "x", 0.0)(t) for t in range(30)} == {"student"}


def test_rollin_student_first_then_teacher():
    actor = coin_schedule(0, 0, "x", 0.5, rollin_turns=2)
    assert [actor(t) for t in range(5)] == ["student", "student", "teacher", "teacher", "teacher"]
