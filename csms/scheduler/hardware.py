"""The CSMS's view of known charging-station hardware: a Station row (vendor and model from its
BootNotification) mapped to its entry in the hardware catalog (simulators/data/hardware.toml).

Why the CSMS reads the simulators' data file: the catalog holds real products' facts (the
simulators reproduce them and report exactly these vendor/model strings), and for some facts it
is the only source. An OCPP 2.0.1 unit's NotifyEVChargingNeeds carries no V2X parameters and 2.0.1
has no standard way to declare discharge, so its discharge rating and whether it takes negative
limits come from the product sheet (DESIGN.md §3.7, "the hardware catalog / operator marks"). The
matched-pair table (iso15118_profiles/data/matched_pairs.toml) is keyed by the same catalog ids,
so knowing the catalog id of a station is how the discharge gate and enrolment check a pair
(DOMAIN.md "Matched pairs matter").

Only `simulators.catalog` is imported: pure data and its loader, no simulator machinery.
"""

from __future__ import annotations

from functools import cache

from csms.store.models import Station
from simulators.catalog import HardwareModel, hardware_models


def _key(vendor: str, model: str) -> tuple[str, str]:
    # Firmware may pad or re-case what the product sheet spells; the pair stays the identity.
    return vendor.strip().casefold(), model.strip().casefold()


@cache
def _by_boot_identity() -> dict[tuple[str, str], HardwareModel]:
    index: dict[tuple[str, str], HardwareModel] = {}
    for hw in hardware_models().values():
        key = _key(hw.vendor_name, hw.model)
        if key in index:
            # Two products booting with the same strings could not be told apart: a data bug.
            raise ValueError(
                f"hardware catalog: {index[key].id!r} and {hw.id!r} both boot as "
                f"vendor {hw.vendor_name!r} model {hw.model!r}"
            )
        index[key] = hw
    return index


def hardware_for(vendor: str, model: str) -> HardwareModel | None:
    """The catalog entry a station booting with this vendor and model is, or None."""
    if not vendor or not model:
        return None
    return _by_boot_identity().get(_key(vendor, model))


def hardware_of(station: Station) -> HardwareModel | None:
    """The catalog entry of a station from its last BootNotification, or None (not booted
    yet, or a product the catalog does not hold)."""
    return hardware_for(station.vendor, station.model)


def evse_model_id(station: Station) -> str | None:
    """The station's catalog id (the EVSE model id of the matched-pair table), or None."""
    hw = hardware_of(station)
    return hw.id if hw is not None else None


def hardware_by_id(model_id: str) -> HardwareModel | None:
    """A catalog entry by its id (e.g. 'dcbel-ara'), or None."""
    return hardware_models().get(model_id)


def known_model_ids() -> list[str]:
    return sorted(hardware_models())
