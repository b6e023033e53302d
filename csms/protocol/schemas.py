"""Validation against the official OCPP JSON schemas that the `ocpp` library ships.

Each schema is compiled once (jsonschema-rs) on first use and cached per version, action and
direction, instead of the library's per-message Draft-4 validator in a thread pool (about
500 µs per TransactionEvent there, a few µs here; see shared/OCPP-LIB-NOTES.md).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import jsonschema_rs
import orjson

from csms.protocol.errors import ErrorCode, RpcError
from csms.protocol.versions import OcppVersion, schema_dir

# Which CALLERROR a failed schema keyword earns (OCPP 2.x Part 4, "Valid Error Codes"):
# a field missing or repeated too often violates its occurrence; a wrong JSON type or a
# string longer than its `string[n]` type violates the data type; a value outside its enum or
# range is an invalid property value; an unknown field breaks the PDU structure.
_KEYWORD_CODES: dict[str, ErrorCode] = {
    "required": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "minItems": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "maxItems": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "type": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "maxLength": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "minLength": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "enum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "const": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "minimum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "maximum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "exclusiveMinimum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "exclusiveMaximum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "multipleOf": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "pattern": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "format": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "additionalProperties": ErrorCode.PROTOCOL_ERROR,
}

REQUEST = "Request"
RESPONSE = "Response"


class SchemaSet:
    """The request and response schemas of one OCPP version."""

    def __init__(self, version: OcppVersion) -> None:
        self.version = version
        self._validators: dict[str, Any] = {}

    @cached_property
    def actions(self) -> frozenset[str]:
        """Every action the version defines (the names of its *Request.json files)."""
        names = (entry.name for entry in schema_dir(self.version).iterdir())
        return frozenset(
            n.removesuffix("Request.json") for n in names if n.endswith("Request.json")
        )

    def raw_schema(self, action: str, direction: str) -> dict[str, Any]:
        path = schema_dir(self.version).joinpath(f"{action}{direction}.json")
        return orjson.loads(path.read_bytes().removeprefix(b"\xef\xbb\xbf"))

    def validator(self, action: str, direction: str) -> Any:
        key = action + direction
        found = self._validators.get(key)
        if found is None:
            if action not in self.actions:
                raise KeyError(f"OCPP {self.version.name} has no action {action!r}")
            found = jsonschema_rs.validator_for(self.raw_schema(action, direction))
            self._validators[key] = found
        return found

    def check(self, action: str, direction: str, payload: dict[str, Any]) -> None:
        """Raise the RpcError the spec prescribes when `payload` breaks the schema."""
        validator = self.validator(action, direction)
        if validator.is_valid(payload):
            return
        error = next(iter(validator.iter_errors(payload)))
        keyword = str(error.schema_path[-1]) if error.schema_path else ""
        where = "/".join(str(p) for p in error.instance_path) or "(payload)"
        raise RpcError(
            _KEYWORD_CODES.get(keyword, ErrorCode.FORMAT_VIOLATION),
            f"{action}{direction} at {where}: {error.message}"[:255],
            details={"path": where, "keyword": keyword},
        )


_SETS: dict[str, SchemaSet] = {}


def schema_set(version: OcppVersion) -> SchemaSet:
    """The process-wide schema set of a version (schemas are immutable, so one is shared)."""
    found = _SETS.get(version.name)
    if found is None:
        found = _SETS[version.name] = SchemaSet(version)
    return found
