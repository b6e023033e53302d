"""FaultPlan: validation with clear errors, derate steps."""

from __future__ import annotations

import pytest

from simulators.faults import FaultPlan, FaultPlanError


def test_derate_steps_apply_from_their_start() -> None:
    plan = FaultPlan(derate=((600.0, 0.5), (60.0, 0.8)))
    assert plan.derate_at(0).factor == 1.0
    assert plan.derate_at(60).factor == 0.8
    assert plan.derate_at(599.9).factor == 0.8
    assert plan.derate_at(600).factor == 0.5


def test_drops_are_sorted() -> None:
    assert FaultPlan(drop_connection_at_s=(30, 10)).drop_connection_at_s == (10.0, 30.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"drop_connection_at_s": (-1.0,)},
        {"offline_for_s": -5.0},
        {"answer_delay_s": float("nan")},
        {"derate": ((10.0, 1.5),)},
    ],
)
def test_bad_plans_are_refused(kwargs: dict) -> None:
    with pytest.raises(FaultPlanError):
        FaultPlan(**kwargs)


def test_none_is_the_empty_plan() -> None:
    assert FaultPlan.none() == FaultPlan()
