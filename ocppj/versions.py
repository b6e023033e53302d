"""The OCPP versions we speak, and everything that differs between them.

Version differences live here and nowhere else, so a handler is written once for 2.0.1 and 2.1
(and OCPP 1.6J could be added as one more entry with its own schema folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from ocppj import frames


@dataclass(frozen=True, slots=True)
class OcppVersion:
    subprotocol: str  # the Sec-WebSocket-Protocol token, e.g. "ocpp2.1"
    name: str  # as stored and shown, e.g. "2.1"
    schema_package: str  # where the `ocpp` library keeps this version's JSON schemas
    message_types: frozenset[int]

    @property
    def has_send(self) -> bool:
        return frames.SEND in self.message_types


V21 = OcppVersion(
    subprotocol="ocpp2.1",
    name="2.1",
    schema_package="ocpp.v21",
    message_types=frozenset(
        {frames.CALL, frames.CALLRESULT, frames.CALLERROR, frames.CALLRESULTERROR, frames.SEND}
    ),
)
V201 = OcppVersion(
    subprotocol="ocpp2.0.1",
    name="2.0.1",
    schema_package="ocpp.v201",
    message_types=frozenset({frames.CALL, frames.CALLRESULT, frames.CALLERROR}),
)

# Preference order when a station offers several: the newest first.
SUPPORTED: tuple[OcppVersion, ...] = (V21, V201)
BY_SUBPROTOCOL: dict[str, OcppVersion] = {v.subprotocol: v for v in SUPPORTED}
BY_NAME: dict[str, OcppVersion] = {v.name: v for v in SUPPORTED}


def schema_dir(version: OcppVersion) -> resources.abc.Traversable:
    return resources.files(version.schema_package).joinpath("schemas")
