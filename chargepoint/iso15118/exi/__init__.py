"""Schema-informed EXI codec for ISO 15118-20 and the SupportedAppProtocol handshake.

W3C EXI 1.0 (Second Edition), bit-packed, header byte ``0x80`` (no cookie, no
options), strict=false schema-informed grammars, default fidelity options, string
table with unbounded value partitions. The grammar of a payload is chosen by its
V2GTP payload type::

    0x8001  urn:iso:15118:2:2010:AppProtocol
    0x8002  urn:iso:std:iso:15118:-20:CommonMessages
    0x8003  urn:iso:std:iso:15118:-20:AC
    0x8004  urn:iso:std:iso:15118:-20:DC

Sans-I/O: bytes in, models out (and back).
"""

from __future__ import annotations

from typing import Any

from chargepoint.iso15118.exi import _codec, _rt
from chargepoint.iso15118.exi._rt import RawDecodeError, RawEncodeError, StringTable
from chargepoint.iso15118.exi.errors import ExiDecodeError, ExiEncodeError
from chargepoint.iso15118.messages import _json
from chargepoint.iso15118.messages._base import ExiModel, FacetError, check

__all__ = [
    "AC",
    "COMMON",
    "DC",
    "PAYLOAD_TYPES",
    "SAP",
    "ExiDecodeError",
    "ExiEncodeError",
    "decode",
    "decode_ex",
    "element_name",
    "encode",
    "from_json",
    "payload_type_of",
    "payload_types_of_element",
    "to_json",
]

SAP = 0x8001
COMMON = 0x8002
AC = 0x8003
DC = 0x8004

#: payload type -> namespace of its grammar
PAYLOAD_TYPES: dict[int, str] = {
    SAP: "urn:iso:15118:2:2010:AppProtocol",
    COMMON: "urn:iso:std:iso:15118:-20:CommonMessages",
    AC: "urn:iso:std:iso:15118:-20:AC",
    DC: "urn:iso:std:iso:15118:-20:DC",
}

_ROOTS = _codec.ROOT_DECODERS
_ENC = _codec.ROOT_ENCODERS
_DEFAULT_PT: dict[type[Any], int] = {}
for _cls, _pt in sorted(_ENC, key=lambda k: k[1]):
    _DEFAULT_PT.setdefault(_cls, _pt)
_ERRS = (ValueError, IndexError, KeyError, OverflowError, MemoryError, RecursionError, TypeError)


def _table() -> StringTable:
    # with valuePartitionCapacity = 0 nothing is ever added: one shared (empty) table
    return _SHARED_TABLE if _rt.VALUE_PARTITION_CAPACITY == 0 else StringTable()


_SHARED_TABLE = StringTable()


def decode(payload: bytes, payload_type: int) -> ExiModel:
    """Decode one EXI document; returns the model of its root element.

    Raises :class:`ExiDecodeError` (and nothing else) on any malformed input.
    """
    return decode_ex(payload, payload_type)[0]


def decode_ex(payload: bytes, payload_type: int) -> tuple[ExiModel, int]:
    """Like :func:`decode`, also returning the bit position where the document ended."""
    root = _ROOTS.get(payload_type)
    if root is None:
        raise ExiDecodeError(f"unsupported payload type {payload_type:#06x}")
    if not payload or payload[0] != 0x80:
        raise ExiDecodeError("EXI header must be 0x80 (no cookie, no options, version 1)")
    ln = len(payload) * 8
    p = 8
    name = "<document>"
    try:
        v = int.from_bytes(payload, "big")
        w, entries = root
        p += w
        code = (v >> (ln - p)) & ((1 << w) - 1)
        if code >= len(entries):
            raise RawDecodeError(p, name, "SE(*) / undeclared root element not supported")
        name, fn = entries[code]
        if fn is None:
            raise RawDecodeError(p, name, "root element not supported by this codec")
        model, p = fn(v, ln, p, _table())
    except RawDecodeError as exc:
        path = [name, *reversed(exc.path)] if name != "<document>" else list(reversed(exc.path))
        raise ExiDecodeError(exc.msg, tuple(x for x in path if x), exc.pos) from None
    except _ERRS as exc:
        raise ExiDecodeError(type(exc).__name__, (name,), p) from None
    return model, p


def element_name(message: ExiModel, payload_type: int | None = None) -> str:
    """XSD name of the global element a model encodes as."""
    pt = payload_type if payload_type is not None else _DEFAULT_PT.get(type(message))
    entry = _ENC.get((type(message), pt or 0))
    if entry is None:
        raise ExiEncodeError(f"{type(message).__name__} is not a global element")
    return str(entry[0])


def payload_type_of(message: ExiModel) -> int:
    """Default V2GTP payload type for a message model."""
    pt = _DEFAULT_PT.get(type(message))
    if pt is None:
        raise ExiEncodeError(f"{type(message).__name__} is not a global element")
    return pt


def encode(message: ExiModel, payload_type: int | None = None) -> bytes:
    """Encode a message model (a global element) into an EXI document (header 0x80).

    Every schema rule the document depends on is checked on the way (ranges, lengths,
    enumeration values, required elements, list bounds, choices, model classes): an
    invalid model raises :class:`ExiEncodeError` and never yields a document.
    """
    pt = payload_type if payload_type is not None else _DEFAULT_PT.get(type(message))
    entry = _ENC.get((type(message), pt or 0))
    if entry is None:
        raise ExiEncodeError(
            f"{type(message).__name__} is not a global element of payload type {pt}"
        )
    _name, code, w, fn = entry
    try:
        a: int
        n: int
        a, n = fn(message, (0x80 << w) | code, 8 + w, _table())
    except RawEncodeError as exc:
        raise _encode_error(message, _name, str(exc)) from None
    except (*_ERRS, AttributeError) as exc:
        reason = f"invalid model ({type(exc).__name__}: {exc})"
        raise _encode_error(message, _name, reason) from None
    pad = -n % 8
    return (a << pad).to_bytes((n + pad) // 8, "big")


def _encode_error(message: ExiModel, name: str, reason: str) -> ExiEncodeError:
    """The encoder stops at the first broken rule without knowing the field's path: the
    model is checked again (only now, off the hot path) to name the offending field."""
    try:
        check(message, name)
    except FacetError as exc:
        return ExiEncodeError(str(exc))
    except (AttributeError, RecursionError):  # a model built without its __init__
        pass
    return ExiEncodeError(f"{name}: {reason}")


def to_json(message: ExiModel) -> dict[str, Any]:
    """``{root element name: content}`` with XSD names, binary as lowercase hex.

    The model is converted as it is (not validated): see :meth:`ExiModel.validate`.
    """
    name = element_name(message)
    try:
        return {name: _json.dump(message)}
    except (AttributeError, TypeError) as exc:
        raise ExiEncodeError(f"{name}: invalid model ({type(exc).__name__}: {exc})") from None


def from_json(data: dict[str, Any], payload_type: int) -> ExiModel:
    """Inverse of :func:`to_json`: builds and validates ``{root element name: content}``.

    Every schema rule is checked; :class:`ExiEncodeError` names the offending field by
    its XSD path (``DC_ChargeLoopRes.Header.SessionID: length 7 is outside 8..8``).
    """
    if not isinstance(data, dict) or len(data) != 1:
        raise ExiEncodeError("expected an object with exactly one root element")
    ((name, body),) = data.items()
    for (cls, pt), entry in _ENC.items():
        if pt == payload_type and entry[0] == name:
            try:
                model: ExiModel = _json.load(cls, body, name)
            except FacetError as exc:
                raise ExiEncodeError(str(exc)) from None
            return model
    raise ExiEncodeError(f"{name} is not a global element of payload type {payload_type:#06x}")


def payload_types_of_element(name: str) -> list[int]:
    """Payload types whose grammar has a (supported) global element called ``name``."""
    return sorted({pt for (_cls, pt), entry in _ENC.items() if entry[0] == name})
