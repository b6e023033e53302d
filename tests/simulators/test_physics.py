"""Battery + charger physics: delivered power comes from the model, energy is conserved."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from iso15118_profiles import get_ev_model
from simulators.catalog import get_hardware
from simulators.physics import Derate, Plant


def _plant(hw: str = "wallbox-quasar-2", ev: str = "kia-ev9-76") -> Plant:
    return Plant.for_pair(get_hardware(hw), get_ev_model(ev))


def test_delivered_power_is_not_the_setpoint_during_delay_and_ramp() -> None:
    plant = _plant()
    state = plant.initial_state(50)
    state, first = plant.step(state, -11_500, 1.0)
    assert first.export_wh == 0  # the 2 s response delay
    state, second = plant.step(state, -11_500, 2.0)
    assert 0 > second.avg_power_w > -11_500  # ramping at 5 kW/s
    state, _ = plant.step(state, -11_500, 10.0)
    assert state.power_w == pytest.approx(-11_500)


def test_discharge_clamped_to_the_evse_limit() -> None:
    plant = _plant("dcbel-ara", "volvo-ex90")
    state, _ = plant.step(plant.initial_state(60), -50_000, 60)
    assert state.power_w == pytest.approx(-15_200)


def test_bms_floor_is_never_crossed_whatever_the_command() -> None:
    plant = _plant("dcbel-ara", "nissan-leaf-40")
    state = plant.initial_state(12)
    for _ in range(200):
        state, _ = plant.step(state, -15_200, 30)
    assert state.soc_pct >= plant.ev.bms_min_soc_pct - 1e-9
    state, delivered = plant.step(state, -15_200, 600)
    assert delivered.export_wh < 0.01  # the derate fades export out as the floor nears
    assert state.soc_pct >= plant.ev.bms_min_soc_pct - 1e-9


def test_unmatched_pair_never_discharges() -> None:
    plant = _plant("dcbel-ara", "kia-ev9-76")
    assert not plant.discharge_allowed
    state, delivered = plant.step(plant.initial_state(70), -15_200, 600)
    assert delivered.export_wh == 0 and state.export_register_wh == 0
    assert state.soc_pct == pytest.approx(70)


def test_charging_tapers_above_80_pct() -> None:
    plant = _plant("tellus-60", "evolectric-60")
    state, _ = plant.step(plant.initial_state(50), 60_000, 60)
    bulk = state.power_w
    state, _ = plant.step(plant.initial_state(95), 60_000, 60)
    assert bulk == pytest.approx(60_000) and state.power_w < bulk / 2


def test_derates_reduce_power() -> None:
    plant = _plant()
    state, _ = plant.step(plant.initial_state(50), 11_500, 60, Derate(heat=0.5))
    assert state.power_w == pytest.approx(5_750)
    with pytest.raises(ValueError, match="heat"):
        Derate(heat=1.5)


def test_round_trip_efficiency_at_rated_power_is_about_87_pct() -> None:
    plant = _plant()
    state = plant.initial_state(50)
    battery_before = state.energy_wh
    state, _ = plant.step(state, 11_500, 3600)
    stored = state.energy_wh - battery_before
    imported = state.import_register_wh
    assert stored / imported == pytest.approx(0.933, abs=0.003)


commands = st.lists(
    st.tuples(st.floats(-80_000, 80_000), st.floats(0.0, 900.0)), min_size=1, max_size=40
)


@settings(max_examples=150, deadline=None)
@given(
    commands=commands,
    soc=st.floats(0, 100),
    pair=st.sampled_from(
        [
            ("wallbox-quasar-2", "kia-ev9-76"),
            ("dcbel-ara", "nissan-leaf-40"),
            ("tellus-60", "evolectric-60"),
            ("heliox-44", "byd-156"),
            ("dcbel-ara", "kia-ev9-100"),
            ("tesla-universal-wall-connector", "tesla-cybertruck"),
        ]
    ),
    heat=st.floats(0.3, 1.0),
)
def test_energy_conservation_registers_soc_and_limits(commands, soc, pair, heat) -> None:
    """Energy in = energy stored + losses, exactly; registers monotonic; SoC within bounds;
    power within the limits and the ramp (limits that fall may cut at once)."""
    plant = _plant(*pair)
    state = plant.initial_state(soc)
    derate = Derate(heat=heat)
    start_energy = state.energy_wh
    for command_w, dt in commands:
        before = state
        state, delivered = plant.step(state, command_w, dt, derate)
        assert state.import_register_wh >= before.import_register_wh
        assert state.export_register_wh >= before.export_register_wh
        assert delivered.import_wh >= 0 and delivered.export_wh >= 0
        assert state.losses_wh >= before.losses_wh - 1e-9
        assert state.energy_wh <= state.capacity_wh + 1e-6
        if before.energy_wh >= plant.floor_wh:
            assert state.energy_wh >= plant.floor_wh - 1e-6
        else:
            assert state.energy_wh >= before.energy_wh - 1e-9  # below floor: never discharges
        assert -plant.hardware.max_discharge_w - 1e-6 <= state.power_w
        assert state.power_w <= plant.hardware.max_charge_w + 1e-6
        if not plant.discharge_allowed:
            assert delivered.export_wh == 0
    net_in = state.import_register_wh - state.export_register_wh
    assert net_in == pytest.approx(state.energy_wh - start_energy + state.losses_wh, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(target=st.floats(-11_500, 11_500), soc=st.floats(30, 70))
def test_power_moves_no_faster_than_the_ramp(target: float, soc: float) -> None:
    plant = _plant()
    state = plant.initial_state(soc)
    state, _ = plant.step(state, target, plant.hardware.response_delay_s)
    ramp = plant.hardware.ramp_w_per_s
    for _ in range(5):
        before = state.power_w
        state, _ = plant.step(state, target, 1.0)
        assert abs(state.power_w - before) <= ramp * 1.0 + 1e-6


PAIRS = [
    ("wallbox-quasar-2", "kia-ev9-76"),
    ("dcbel-ara", "nissan-leaf-40"),
    ("tellus-60", "evolectric-60"),
    ("heliox-44", "byd-156"),
    ("tesla-universal-wall-connector", "tesla-cybertruck"),
]


@settings(max_examples=200, deadline=None)
@given(
    pair=st.sampled_from(PAIRS),
    soc=st.floats(0, 100),
    command_w=st.floats(-80_000, 80_000),
    heat=st.floats(0.3, 1.0),
    total_s=st.floats(1.0, 14_400.0),
    weights=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=30),
)
@example(  # the taper runs into full within one long step
    pair=PAIRS[4], soc=98.6, command_w=73_000, heat=0.96, total_s=12_430, weights=[1.0] * 22
)
def test_one_long_step_equals_many_short_steps(pair, soc, command_w, heat, total_s, weights):
    """With no command change, how a span is cut into steps does not change the physics: one
    analytic step where the power holds, bounded mid-point steps along the taper / floor derate.
    Tolerance: 2e-4 of the energy moved (the mid-point rule on a different grid) + 1e-6 Wh."""
    plant = _plant(*pair)
    derate = Derate(heat=heat)
    settle_s = plant.hardware.response_delay_s + 80_000 / plant.hardware.ramp_w_per_s + 1
    start, _ = plant.step(plant.initial_state(soc), command_w, settle_s, derate)
    long, long_delivered = plant.step(start, command_w, total_s, derate)
    short, imported, exported = start, 0.0, 0.0
    for weight in weights:
        short, delivered = plant.step(short, command_w, total_s * weight / sum(weights), derate)
        imported += delivered.import_wh
        exported += delivered.export_wh
    tolerance = 2e-4 * abs(long.energy_wh - start.energy_wh) + 1e-6
    assert short.elapsed_s == pytest.approx(long.elapsed_s)
    assert short.energy_wh == pytest.approx(long.energy_wh, abs=tolerance)
    assert imported == pytest.approx(long_delivered.import_wh, abs=tolerance)
    assert exported == pytest.approx(long_delivered.export_wh, abs=tolerance)
    assert short.losses_wh == pytest.approx(long.losses_wh, abs=tolerance)


def test_a_held_power_is_one_sub_step_however_long_the_step(monkeypatch) -> None:
    """The cost of a step where nothing changes does not grow with its length."""
    plant = _plant()
    state, _ = plant.step(plant.initial_state(20), 11_500, 30)  # past the delay and the ramp
    substeps: list[float] = []
    account = Plant._account

    def counting(self, state, power_w, h):
        substeps.append(h)
        return account(self, state, power_w, h)

    monkeypatch.setattr(Plant, "_account", counting)
    for dt_s in (60.0, 600.0, 3_600.0):
        substeps.clear()
        state, delivered = plant.step(state, 11_500, dt_s)
        assert delivered.avg_power_w == pytest.approx(11_500)
        assert substeps == [pytest.approx(dt_s)]


def test_steady_step_stops_where_the_taper_cuts_the_power() -> None:
    """A held power ends exactly where the taper's ceiling falls below it, then follows it."""
    plant = _plant("tellus-60", "evolectric-60")
    state, _ = plant.step(plant.initial_state(70), 60_000, 30)
    assert state.power_w == pytest.approx(60_000)
    state, delivered = plant.step(state, 60_000, 3_600)
    assert state.power_w < 60_000 and delivered.avg_power_w < 60_000
    assert state.soc_pct > plant.ev.taper_start_soc_pct
