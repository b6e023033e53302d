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

from ocppj.errors import ErrorCode, RpcError
from ocppj.versions import OcppVersion, schema_dir

# Which CALLERROR a failed schema keyword earns. OCPP 2.0.1 / 2.1 Part 4 ("Valid Error Codes"):
#   ProtocolError                  "Payload for Action is not conform the PDU structure"
#   OccurrenceConstraintViolation  "... at least one of the fields violates occurrence constraints"
#   TypeConstraintViolation        "... violates data type constraints (e.g. "somestring": 12)"
#   PropertyConstraintViolation    "... at least one field contains an invalid value"
#   FormatViolation                "Payload for Action is syntactically incorrect"
# Reading the schema keywords against these:
# - additionalProperties: a field the message type does not have is a payload that does not
#   conform to the PDU structure -> ProtocolError (the syntax, JSON, is fine: not FormatViolation).
# - required / minItems / maxItems: the spec's cardinalities (1..1, 0..*, 1..4) are occurrence
#   constraints -> OccurrenceConstraintViolation.
# - type: the example in the spec's own definition -> TypeConstraintViolation.
# - maxLength / minLength: `string[n]` and `identifierString[n]` are data types of Part 2
#   ("Primitive Datatypes"), so a too-long string violates its type -> TypeConstraintViolation.
# - format (date-time, uri): `dateTime` and `anyURI` are primitive data types as well, so a
#   malformed timestamp violates its type -> TypeConstraintViolation.
# - enum / minimum / maximum / const / pattern / multipleOf: the type is right but the value is
#   not one the field allows -> PropertyConstraintViolation.
# Anything else (no such keyword in the 2.0.1 / 2.1 schemas today) falls back to FormatViolation.
_KEYWORD_CODES: dict[str, ErrorCode] = {
    "additionalProperties": ErrorCode.PROTOCOL_ERROR,
    "required": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "minItems": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "maxItems": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "type": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "maxLength": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "minLength": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "format": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "enum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "const": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "minimum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "maximum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "exclusiveMinimum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "exclusiveMaximum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "multipleOf": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "pattern": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
}

# When a payload breaks several rules, the most fundamental one is reported: a wrong structure
# before a missing field, a wrong type before a value outside its enum (a string enum given 7
# fails both `type` and `enum`; the type is the real fault). The order follows the table above.
_PRIORITY: dict[ErrorCode, int] = {
    ErrorCode.PROTOCOL_ERROR: 0,
    ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION: 1,
    ErrorCode.TYPE_CONSTRAINT_VIOLATION: 2,
    ErrorCode.PROPERTY_CONSTRAINT_VIOLATION: 3,
    ErrorCode.FORMAT_VIOLATION: 4,
}

REQUEST = "Request"
RESPONSE = "Response"
# A 2.1 SEND message (type 6) is never answered; its schema is named after the action alone
# (NotifyPeriodicEventStream.json), with no Request/Response suffix.
SEND = ""


class SchemaSet:
    """The request and response schemas of one OCPP version."""

    def __init__(self, version: OcppVersion) -> None:
        self.version = version
        self._validators: dict[str, Any] = {}
        self._raw: dict[str, dict[str, Any]] = {}

    @cached_property
    def actions(self) -> frozenset[str]:
        """Every action the version defines (the names of its *Request.json files)."""
        names = (entry.name for entry in schema_dir(self.version).iterdir())
        return frozenset(
            n.removesuffix("Request.json") for n in names if n.endswith("Request.json")
        )

    @cached_property
    def send_actions(self) -> frozenset[str]:
        """Actions sent as SEND (type 6): schema files with neither suffix."""
        names = (entry.name for entry in schema_dir(self.version).iterdir())
        return frozenset(
            n.removesuffix(".json")
            for n in names
            if n.endswith(".json") and not n.endswith(("Request.json", "Response.json"))
        )

    def raw_schema(self, action: str, direction: str) -> dict[str, Any]:
        """The parsed schema (shared and cached: treat it as read-only).

        Raises KeyError for an action the version does not define, like `validator`.
        """
        key = action + direction
        found = self._raw.get(key)
        if found is None:
            self._require(action, direction)
            path = schema_dir(self.version).joinpath(f"{key}.json")
            found = orjson.loads(path.read_bytes().removeprefix(b"\xef\xbb\xbf"))
            self._raw[key] = found
        return found

    def validator(self, action: str, direction: str) -> Any:
        key = action + direction
        found = self._validators.get(key)
        if found is None:
            found = jsonschema_rs.validator_for(self.raw_schema(action, direction))
            self._validators[key] = found
        return found

    def _require(self, action: str, direction: str) -> None:
        if direction == SEND:
            if action not in self.send_actions:
                raise KeyError(f"OCPP {self.version.name} has no SEND message {action!r}")
            return
        if action not in self.actions:
            raise KeyError(f"OCPP {self.version.name} has no action {action!r}")
        if direction not in (REQUEST, RESPONSE):
            raise KeyError(f"direction must be {REQUEST!r} or {RESPONSE!r}, not {direction!r}")

    def check(self, action: str, direction: str, payload: dict[str, Any]) -> None:
        """Raise the RpcError the spec prescribes when `payload` breaks the schema."""
        validator = self.validator(action, direction)
        if validator.is_valid(payload):
            return
        code, keyword, error = min(
            ((*_code_of(e), e) for e in validator.iter_errors(payload)),
            key=lambda found: _PRIORITY[found[0]],
        )
        where = "/".join(str(p) for p in error.instance_path) or "(payload)"
        raise RpcError(
            code,
            f"{action}{direction} at {where}: {error.message}"[:255],
            details={"path": where, "keyword": keyword},
        )


def _code_of(error: Any) -> tuple[ErrorCode, str]:
    keyword = str(error.schema_path[-1]) if error.schema_path else ""
    return _KEYWORD_CODES.get(keyword, ErrorCode.FORMAT_VIOLATION), keyword


_SETS: dict[str, SchemaSet] = {}


def schema_set(version: OcppVersion) -> SchemaSet:
    """The process-wide schema set of a version (schemas are immutable, so one is shared)."""
    found = _SETS.get(version.name)
    if found is None:
        found = _SETS[version.name] = SchemaSet(version)
    return found
