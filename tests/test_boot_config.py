"""The pure planner of the boot-time configuration (DESIGN §3.9)."""

from __future__ import annotations

from csms.boot_config import (
    ALIGNED_INTERVAL,
    ITEMS_PER_SET_VARIABLES,
    MEASURANDS,
    MESSAGE_ATTEMPTS,
    VariableKey,
    VariableSetting,
    batches,
    plan_boot_configuration,
)
from ocppj.versions import V21, V201

V2X_EVSE1 = VariableKey("V2XChargingCtrlr", "SupportedOperationModes", evse_id=1)
V2X_EVSE2 = VariableKey("V2XChargingCtrlr", "Enabled", evse_id=2)
ALL_MEASURANDS = (
    "Energy.Active.Import.Register,Energy.Active.Export.Register,"
    "Power.Active.Import,Power.Active.Export,SoC"
)


def keys(plan: list[VariableSetting]) -> list[VariableKey]:
    return [s.key for s in plan]


def test_B05_nothing_known_sends_everything_without_v2x() -> None:
    plan = plan_boot_configuration(V21, {})
    assert {s.key: s.value for s in plan} == {
        MEASURANDS: ALL_MEASURANDS,
        ALIGNED_INTERVAL: "900",
        MESSAGE_ATTEMPTS: "5",
    }
    assert MESSAGE_ATTEMPTS.variable == "MessageAttempts"
    assert MESSAGE_ATTEMPTS.variable_instance == "TransactionEvent"


def test_Q01_v2x_enabled_on_each_evse_that_has_the_component_on_21_only() -> None:
    known = {V2X_EVSE1: "ChargingOnly,CentralSetpoint", V2X_EVSE2: "false"}
    plan21 = plan_boot_configuration(V21, known, force=True)
    v2x = [s for s in plan21 if s.key.component == "V2XChargingCtrlr"]
    assert [(s.key.variable, s.key.evse_id, s.value) for s in v2x] == [
        ("Enabled", 1, "true"),
        ("Enabled", 2, "true"),
    ]
    assert v2x[0].set_variable_data() == {
        "attributeType": "Actual",
        "attributeValue": "true",
        "component": {"name": "V2XChargingCtrlr", "evse": {"id": 1}},
        "variable": {"name": "Enabled"},
    }
    plan201 = plan_boot_configuration(V201, known, force=True)
    assert all(s.key.component != "V2XChargingCtrlr" for s in plan201)


def test_B05_not_forced_sends_only_what_the_device_model_shows_otherwise() -> None:
    known = {
        MEASURANDS: ALL_MEASURANDS + ",Current.Import",  # includes ours: fine
        ALIGNED_INTERVAL: "300",  # differs
        MESSAGE_ATTEMPTS: "10",  # more than enough
        VariableKey("V2XChargingCtrlr", "Enabled", evse_id=1): "TRUE",
        V2X_EVSE2: "false",  # differs
    }
    plan = plan_boot_configuration(V21, known)
    assert keys(plan) == [ALIGNED_INTERVAL, V2X_EVSE2]


def test_B05_forced_sends_everything_even_when_satisfied() -> None:
    known = {MEASURANDS: ALL_MEASURANDS, ALIGNED_INTERVAL: "900", MESSAGE_ATTEMPTS: "5"}
    assert plan_boot_configuration(V201, known) == []
    assert len(plan_boot_configuration(V201, known, force=True)) == 3


def test_B05_missing_or_unreadable_values_are_sent() -> None:
    known = {
        MEASURANDS: "Energy.Active.Import.Register",  # lacks export, power, SoC
        ALIGNED_INTERVAL: None,
        MESSAGE_ATTEMPTS: "three",
    }
    assert keys(plan_boot_configuration(V201, known)) == [
        MEASURANDS,
        ALIGNED_INTERVAL,
        MESSAGE_ATTEMPTS,
    ]


def test_set_variables_are_split_by_items_per_message() -> None:
    plan = plan_boot_configuration(V21, {V2X_EVSE1: "x", V2X_EVSE2: "x"}, force=True)
    assert len(plan) == 5
    assert [len(b) for b in batches(plan, {ITEMS_PER_SET_VARIABLES: "2"})] == [2, 2, 1]
    assert [len(b) for b in batches(plan, {})] == [5]
    assert [len(b) for b in batches(plan, {ITEMS_PER_SET_VARIABLES: "0"})] == [5]
