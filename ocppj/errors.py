"""OCPP-J RPC framework errors (OCPP 2.0.1 / 2.1 Part 4, table "Valid Error Codes")."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    FORMAT_VIOLATION = "FormatViolation"
    GENERIC_ERROR = "GenericError"
    INTERNAL_ERROR = "InternalError"
    MESSAGE_TYPE_NOT_SUPPORTED = "MessageTypeNotSupported"
    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"
    OCCURRENCE_CONSTRAINT_VIOLATION = "OccurrenceConstraintViolation"
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
    PROTOCOL_ERROR = "ProtocolError"
    RPC_FRAMEWORK_ERROR = "RpcFrameworkError"
    SECURITY_ERROR = "SecurityError"
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"


# The spec uses "-1" as the message id of a CALLERROR when the request's id cannot be read.
UNREADABLE_MESSAGE_ID = "-1"


class RpcError(Exception):
    """An error to send back as a CALLERROR (or CALLRESULTERROR on 2.1)."""

    def __init__(
        self,
        code: ErrorCode,
        description: str,
        *,
        message_id: str = UNREADABLE_MESSAGE_ID,
        details: dict[str, Any] | None = None,
        frame_type: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.message_id = message_id
        self.details = details or {}
        # The MessageTypeId of the offending frame when it could be read: a broken CALLRESULT
        # is answered differently (or not at all) from a broken CALL.
        self.frame_type = frame_type

    def with_message_id(self, message_id: str) -> RpcError:
        return RpcError(
            self.code,
            self.description,
            message_id=message_id,
            details=self.details,
            frame_type=self.frame_type,
        )
