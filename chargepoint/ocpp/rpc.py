"""OCPP-J RPC framing (OCPP 2.0.1 Part 4 §4; OCPP 2.1 Part 4 §4), sans-I/O.

A frame is a JSON array whose first element is the MessageTypeId::

    CALL            [2, "<id>", "<Action>", {payload}]
    CALLRESULT      [3, "<id>", {payload}]
    CALLERROR       [4, "<id>", "<errorCode>", "<description>", {details}]
    CALLRESULTERROR [5, "<id>", "<errorCode>", "<description>", {details}]   (2.1 only)
    SEND            [6, "<id>", "<Action>", {payload}]                          (2.1 only)

:func:`parse_frame` never raises on peer input: a frame it cannot read comes
back as :class:`MalformedFrame`, which says which CALLERROR the receiver owes
(or ``None`` when nothing may be answered).  :func:`encode_frame` serialises
frames we send; passing it something we are not allowed to send raises
:class:`~chargepoint.errors.LocalProtocolError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any

from chargepoint.errors import LocalProtocolError

JsonObject = dict[str, Any]

#: OCPP-J: a message id is a string of at most 36 characters (Part 4 §4.1.4).
MAX_MESSAGE_ID_LENGTH = 36
#: OCPP-J: the id to use in a CALLERROR when the id of the offending frame
#: cannot be read (Part 4 §4.2.3).
UNREADABLE_ID = "-1"


class ProtocolVersion(Enum):
    """An OCPP version, named by its WebSocket subprotocol (Part 4 §3.1.2)."""

    V201 = "ocpp2.0.1"
    V21 = "ocpp2.1"


class MessageType(IntEnum):
    CALL = 2
    CALL_RESULT = 3
    CALL_ERROR = 4
    CALL_RESULT_ERROR = 5  # OCPP 2.1 Part 4 §4.2.4
    SEND = 6  # OCPP 2.1 Part 4 §4.2.5: never answered


class ErrorCode(Enum):
    """RPC framework error codes (OCPP 2.0.1 Part 4 §4.3)."""

    FORMAT_VIOLATION = "FormatViolation"
    GENERIC_ERROR = "GenericError"
    INTERNAL_ERROR = "InternalError"
    MESSAGE_TYPE_NOT_SUPPORTED = "MessageTypeNotSupported"
    NOT_IMPLEMENTED = "NotImplemented"  # action not known by the receiver
    NOT_SUPPORTED = "NotSupported"  # action known but not supported
    OCCURRENCE_CONSTRAINT_VIOLATION = "OccurrenceConstraintViolation"
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
    PROTOCOL_ERROR = "ProtocolError"
    RPC_FRAMEWORK_ERROR = "RpcFrameworkError"
    SECURITY_ERROR = "SecurityError"
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"


@dataclass(frozen=True)
class Call:
    unique_id: str
    action: str
    payload: JsonObject


@dataclass(frozen=True)
class CallResult:
    unique_id: str
    payload: JsonObject


@dataclass(frozen=True)
class CallError:
    unique_id: str
    error_code: str
    description: str = ""
    details: JsonObject = field(default_factory=dict)


@dataclass(frozen=True)
class Send:
    """OCPP 2.1 unconfirmed message; the receiver never answers it."""

    unique_id: str
    action: str
    payload: JsonObject


@dataclass(frozen=True)
class CallResultError:
    """OCPP 2.1: the receiver of a CALLRESULT could not process it."""

    unique_id: str
    error_code: str
    description: str = ""
    details: JsonObject = field(default_factory=dict)


@dataclass(frozen=True)
class MalformedFrame:
    """A frame that is not a valid RPC message.

    ``reply`` is the CALLERROR the receiver owes, or ``None`` when the frame
    must be dropped silently (a broken CALLRESULT/CALLERROR is never answered:
    answering would create an error loop).
    """

    raw: str
    reason: str
    reply: CallError | None


Frame = Call | CallResult | CallError | Send | CallResultError


def _readable_id(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= MAX_MESSAGE_ID_LENGTH:
        return value
    return None


def _malformed(raw: str, reason: str, unique_id: str | None, code: ErrorCode) -> MalformedFrame:
    reply = CallError(unique_id or UNREADABLE_ID, code.value, reason[:255])
    return MalformedFrame(raw=raw, reason=reason, reply=reply)


def parse_frame(raw: str, version: ProtocolVersion) -> Frame | MalformedFrame:
    """Parse one WebSocket text message.  Never raises on peer input."""
    try:
        decoded: object = json.loads(raw)
    except (ValueError, RecursionError):  # also integers beyond Python's digit limit
        # OCPP-J §4.3: RpcFrameworkError, id "-1" since no id can be read.
        return _malformed(raw, "not valid JSON", None, ErrorCode.RPC_FRAMEWORK_ERROR)
    if not isinstance(decoded, list) or len(decoded) < 2:
        return _malformed(raw, "not an RPC array", None, ErrorCode.RPC_FRAMEWORK_ERROR)
    type_id, raw_id = decoded[0], decoded[1]
    unique_id = _readable_id(raw_id)
    if unique_id is None:
        return _malformed(raw, "message id unreadable", None, ErrorCode.RPC_FRAMEWORK_ERROR)
    known_types = {MessageType.CALL, MessageType.CALL_RESULT, MessageType.CALL_ERROR}
    if version is ProtocolVersion.V21:
        known_types |= {MessageType.CALL_RESULT_ERROR, MessageType.SEND}
    if isinstance(type_id, bool) or not isinstance(type_id, int) or type_id not in known_types:
        # OCPP 2.0.1 Part 4 §4.3: MessageTypeNotSupported for an unknown type.
        return _malformed(
            raw,
            f"message type {type_id!r} not supported",
            unique_id,
            ErrorCode.MESSAGE_TYPE_NOT_SUPPORTED,
        )
    message_type = MessageType(type_id)
    if message_type in (MessageType.CALL, MessageType.SEND):
        if len(decoded) != 4 or not isinstance(decoded[2], str) or not decoded[2]:
            return _malformed(
                raw, "CALL needs [2, id, action, payload]", unique_id, ErrorCode.RPC_FRAMEWORK_ERROR
            )
        if not isinstance(decoded[3], dict):
            return _malformed(
                raw, "payload is not an object", unique_id, ErrorCode.FORMAT_VIOLATION
            )
        if message_type is MessageType.SEND:
            return Send(unique_id, decoded[2], decoded[3])
        return Call(unique_id, decoded[2], decoded[3])
    if message_type is MessageType.CALL_RESULT:
        if len(decoded) != 3 or not isinstance(decoded[2], dict):
            return MalformedFrame(raw, "CALLRESULT needs [3, id, payload]", None)
        return CallResult(unique_id, decoded[2])
    # CALLERROR / CALLRESULTERROR
    if (
        len(decoded) != 5
        or not isinstance(decoded[2], str)
        or not isinstance(decoded[3], str)
        or not isinstance(decoded[4], dict)
    ):
        return MalformedFrame(raw, "CALLERROR needs [4, id, code, description, details]", None)
    if message_type is MessageType.CALL_ERROR:
        return CallError(unique_id, decoded[2], decoded[3], decoded[4])
    return CallResultError(unique_id, decoded[2], decoded[3], decoded[4])


def encode_frame(frame: Frame) -> str:
    """Serialise a frame compactly, as OCPP-J expects."""
    if _readable_id(frame.unique_id) is None and frame.unique_id != UNREADABLE_ID:
        raise LocalProtocolError(f"message id {frame.unique_id!r} is not 1..36 characters")
    body: list[Any]
    match frame:
        case Call(unique_id, action, payload):
            body = [MessageType.CALL.value, unique_id, action, payload]
        case Send(unique_id, action, payload):
            body = [MessageType.SEND.value, unique_id, action, payload]
        case CallResult(unique_id, payload):
            body = [MessageType.CALL_RESULT.value, unique_id, payload]
        case CallError(unique_id, code, description, details):
            body = [MessageType.CALL_ERROR.value, unique_id, code, description, details]
        case CallResultError(unique_id, code, description, details):
            body = [MessageType.CALL_RESULT_ERROR.value, unique_id, code, description, details]
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
