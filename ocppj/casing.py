"""Field names between the `ocpp` library's snake_case dataclasses and the spec's JSON.

The library converts names with regular expressions and gets 43 of the 555 OCPP 2.1 names
wrong (`setpoint_L2`, `fixedPFAbsorb`, `LimitAtSoC.soc`, `receiptUrl`, ...). Here the mapping
is driven by the schema of the message itself: walking the schema alongside the data, a key
names the property of *that object* that it equals ignoring case and underscores. A global
table cannot work: the 2.1 schemas spell `priceScheduleID` in one type and `priceScheduleId`
in another. tests/protocol/test_casing.py checks the round trip over every property of every
schema.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

from ocppj.schemas import REQUEST, schema_set
from ocppj.versions import OcppVersion


def fold(name: str) -> str:
    """A name with case and underscores ignored: `setpoint_l2`, `setpoint_L2` -> `setpointl2`."""
    return name.replace("_", "").lower()


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        return root["definitions"][ref.removeprefix("#/definitions/")]
    return node


def _convert(data: Any, node: dict[str, Any] | None, root: dict[str, Any]) -> Any:
    if isinstance(data, Enum):
        return data.value
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        # a library datatype inside a dict payload, e.g. {"chargingProfile": ChargingProfileType()}
        data = dataclasses.asdict(data)
    if node is not None:
        node = _resolve(node, root)
    if isinstance(data, dict):
        props: dict[str, Any] = (node or {}).get("properties") or {}
        by_fold = {fold(p): p for p in props}
        out: dict[str, Any] = {}
        for key, value in data.items():
            if value is None:
                continue
            name = by_fold.get(fold(key), key)
            out[name] = _convert(value, props.get(name), root)
        return out
    if isinstance(data, list | tuple):
        items = (node or {}).get("items")
        return [_convert(v, items if isinstance(items, dict) else None, root) for v in data]
    return data


def to_spec(
    data: Any, action: str, version: OcppVersion, direction: str = REQUEST
) -> dict[str, Any]:
    """Rename the keys of a payload to the spec's spelling for `action`; drop None values.

    Keys the schema does not know are kept as they are, so validation can name them.
    """
    root = schema_set(version).raw_schema(action, direction)
    return _convert(data, root, root)


def payload_of(
    message: Any, version: OcppVersion, action: str | None = None, direction: str = REQUEST
) -> tuple[str, dict[str, Any]]:
    """(action, spec JSON payload) of a library dataclass like `ocpp.v21.call.Reset(...)`.

    A plain dict is taken as a payload already in the spec's spelling when `action` is given.
    """
    if dataclasses.is_dataclass(message) and not isinstance(message, type):
        name = action or type(message).__name__
        return name, to_spec(dataclasses.asdict(message), name, version, direction)
    if isinstance(message, dict) and action:
        return action, to_spec(message, action, version, direction)
    raise TypeError(f"expected an OCPP message dataclass, or a dict with its action: {message!r}")
