"""What a car can do at a given SoC, and what it announces over ISO 15118-20 / OCPP.

Pure functions of (EV model, SoC, EVSE limits). Field names of the returned dicts are exactly
OCPP 2.1's `V2XChargingParametersType` / `ChargingNeedsType` names (camelCase, W and Wh), so a
station engine sends them as they are in NotifyEVChargingNeeds.

Powers announced follow the spec's definitions: `maxChargePower`, `maxDischargePower` are
min(EV, EVSE); `minChargePower`, `minDischargePower` are max(EV, EVSE). Energy requests are Wh
relative to the current SoC (negative when the SoC is already above the level).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from iso15118_profiles.models import EvModel

# US split-phase residential supply; AC current fields are derived from it.
AC_VOLTAGE_V = 240.0


def charge_fraction(ev: EvModel, soc_pct: float) -> float:
    """CC-CV taper: 1 up to taper_start_soc_pct, then down to taper_end_fraction at 100 %."""
    if soc_pct <= ev.taper_start_soc_pct:
        return 1.0
    if soc_pct >= 100.0:
        return ev.taper_end_fraction
    x = (soc_pct - ev.taper_start_soc_pct) / (100.0 - ev.taper_start_soc_pct)
    if ev.taper_shape == "exponential":
        return ev.taper_end_fraction**x
    return 1.0 - (1.0 - ev.taper_end_fraction) * x


def discharge_fraction(ev: EvModel, soc_pct: float) -> float:
    """0 at or below the BMS floor, rising linearly to 1 over discharge_derate_span_pct."""
    above = soc_pct - ev.bms_min_soc_pct
    if above <= 0:
        return 0.0
    if ev.discharge_derate_span_pct <= 0 or above >= ev.discharge_derate_span_pct:
        return 1.0
    return above / ev.discharge_derate_span_pct


def max_charge_power_w(ev: EvModel, soc_pct: float, current_type: str) -> float:
    """The car's charge ceiling at this SoC (0 when full)."""
    if soc_pct >= 100.0:
        return 0.0
    return ev.max_charge_w(current_type) * charge_fraction(ev, soc_pct)


def max_discharge_power_w(ev: EvModel, soc_pct: float) -> float:
    """The car's export ceiling at this SoC (0 at the BMS floor, whatever is asked)."""
    return ev.max_discharge_kw * 1000.0 * discharge_fraction(ev, soc_pct)


def energy_to_soc_wh(ev: EvModel, soc_pct: float, level_pct: float) -> float:
    """Wh from the current SoC to a level; negative when already above it."""
    return (level_pct - soc_pct) / 100.0 * ev.capacity_wh


def v2x_charging_parameters(
    ev: EvModel,
    soc_pct: float,
    current_type: str,
    evse_max_charge_w: float,
    evse_max_discharge_w: float,
    target_soc_pct: float | None = None,
    min_soc_pct: float | None = None,
) -> dict[str, Any]:
    """OCPP 2.1 V2XChargingParametersType the car announces (ISO 15118-20 BPT, Q01-Q04).

    `min_soc_pct` is the level the EV must not go below (the owner's floor if higher than the
    BMS floor); `target_soc_pct` defaults to the model's usual target.
    """
    target = ev.default_target_soc_pct if target_soc_pct is None else target_soc_pct
    floor = max(ev.bms_min_soc_pct, min_soc_pct or 0.0)
    max_charge = min(max_charge_power_w(ev, soc_pct, current_type), evse_max_charge_w)
    max_discharge = min(max_discharge_power_w(ev, soc_pct), evse_max_discharge_w)
    return {
        "maxChargePower": round(max_charge),
        "minChargePower": round(min(ev.min_charge_kw * 1000.0, max_charge)),
        "maxDischargePower": round(max_discharge),
        "minDischargePower": round(min(ev.min_discharge_kw * 1000.0, max_discharge)),
        "evTargetEnergyRequest": round(energy_to_soc_wh(ev, soc_pct, target)),
        "evMinEnergyRequest": round(energy_to_soc_wh(ev, soc_pct, floor)),
        "evMaxEnergyRequest": round(energy_to_soc_wh(ev, soc_pct, 100.0)),
        "evMinV2XEnergyRequest": round(energy_to_soc_wh(ev, soc_pct, ev.v2x_min_soc_pct)),
        "evMaxV2XEnergyRequest": round(energy_to_soc_wh(ev, soc_pct, ev.v2x_max_soc_pct)),
        "targetSoC": round(target),
    }


def dc_charging_parameters(
    ev: EvModel, soc_pct: float, evse_max_charge_w: float, target_soc_pct: float | None = None
) -> dict[str, Any]:
    """DCChargingParametersType (2.0.1 and 2.1)."""
    target = ev.default_target_soc_pct if target_soc_pct is None else target_soc_pct
    power = min(ev.max_charge_w("DC"), evse_max_charge_w)
    return {
        "evMaxCurrent": round(power / ev.nominal_pack_voltage_v),
        "evMaxVoltage": round(ev.nominal_pack_voltage_v * 1.1),
        "evMaxPower": round(power),
        "evEnergyCapacity": round(ev.capacity_wh),
        "energyAmount": round(max(0.0, energy_to_soc_wh(ev, soc_pct, target))),
        "stateOfCharge": max(0, min(100, round(soc_pct))),
        "fullSoC": 100,
        "bulkSoC": round(ev.taper_start_soc_pct),
    }


def ac_charging_parameters(
    ev: EvModel, soc_pct: float, evse_max_charge_w: float, target_soc_pct: float | None = None
) -> dict[str, Any]:
    """ACChargingParametersType (2.0.1 and 2.1), on a 240 V supply."""
    target = ev.default_target_soc_pct if target_soc_pct is None else target_soc_pct
    power = min(ev.max_charge_w("AC"), evse_max_charge_w)
    return {
        "energyAmount": round(max(0.0, energy_to_soc_wh(ev, soc_pct, target))),
        "evMinCurrent": max(1, round(ev.min_charge_kw * 1000.0 / AC_VOLTAGE_V)),
        "evMaxCurrent": round(power / AC_VOLTAGE_V),
        "evMaxVoltage": round(AC_VOLTAGE_V),
    }


def charging_needs(
    ev: EvModel,
    soc_pct: float,
    current_type: str,
    evse_max_charge_w: float,
    evse_max_discharge_w: float,
    *,
    version: str,
    bidirectional: bool,
    departure: datetime | None = None,
    target_soc_pct: float | None = None,
    min_soc_pct: float | None = None,
) -> dict[str, Any]:
    """ChargingNeedsType for NotifyEVChargingNeeds at plug-in.

    `version` is "2.1" or "2.0.1". `bidirectional` is the caller's decision (matched pair per
    `can_discharge`, a BPT mode on both sides, 2.1): only then does the car request a BPT mode
    and send `v2xChargingParameters`. 2.0.1 has no V2X fields at all (DOMAIN.md).
    """
    bpt = ev.bpt_mode(current_type) if bidirectional and version == "2.1" else None
    requested = bpt or ev.charge_only_mode(current_type)
    needs: dict[str, Any] = {"requestedEnergyTransfer": requested}
    if current_type == "DC":
        needs["dcChargingParameters"] = dc_charging_parameters(
            ev, soc_pct, evse_max_charge_w, target_soc_pct
        )
    else:
        needs["acChargingParameters"] = ac_charging_parameters(
            ev, soc_pct, evse_max_charge_w, target_soc_pct
        )
    if departure is not None:
        needs["departureTime"] = departure.isoformat().replace("+00:00", "Z")
    if version != "2.1":
        return needs
    needs["availableEnergyTransfer"] = [requested, ev.charge_only_mode(current_type)]
    needs["controlMode"] = "ScheduledControl"
    if bpt is not None:
        needs["v2xChargingParameters"] = v2x_charging_parameters(
            ev,
            soc_pct,
            current_type,
            evse_max_charge_w,
            evse_max_discharge_w,
            target_soc_pct,
            min_soc_pct,
        )
    return needs
