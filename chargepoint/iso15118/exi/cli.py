"""Back ends of ``chargepoint exi decode|encode`` (the lead wires the argparse side).

``decode_command`` returns JSON text::

    {"payload_type": "0x8004", "namespace": "urn:...:DC", "message": {"DC_ChargeLoopReq": {...}}}

``encode_command`` accepts that same object (or just ``{"<Root>": {...}}``, the payload
type then follows from the root element) and returns the EXI payload as lowercase hex.
"""

from __future__ import annotations

import json
from typing import Any

from chargepoint.iso15118 import exi
from chargepoint.iso15118.exi.errors import ExiDecodeError, ExiEncodeError

V2GTP_HEADER_LEN = 8


def _parse_hex(hex_str: str) -> bytes:
    text = "".join(hex_str.split())
    if text.lower().startswith("0x"):
        text = text[2:]
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise ExiDecodeError(f"not a hex string: {exc}") from None


def decode_command(hex_str: str, payload_type: int | None) -> str:
    """Decode an EXI payload (hex; a leading V2GTP header is accepted) to JSON text.

    With ``payload_type=None`` the payload type comes from the V2GTP header if present,
    else every namespace is tried and the one whose document ends exactly at the end
    of the payload (only zero padding left) wins.
    """
    data = _parse_hex(hex_str)
    if len(data) >= V2GTP_HEADER_LEN and data[0] == 0x01 and data[1] == 0xFE:
        header_pt = int.from_bytes(data[2:4], "big")
        length = int.from_bytes(data[4:8], "big")
        if length == len(data) - V2GTP_HEADER_LEN:
            data = data[V2GTP_HEADER_LEN:]
            if payload_type is None:
                payload_type = header_pt
    candidates = [payload_type] if payload_type is not None else sorted(exi.PAYLOAD_TYPES)
    found: list[tuple[int, Any]] = []
    last_error: ExiDecodeError | None = None
    for pt in candidates:
        try:
            model, end = exi.decode_ex(data, pt)
        except ExiDecodeError as exc:
            last_error = exc
            continue
        rest = len(data) * 8 - end
        exact = rest < 8 and int.from_bytes(data, "big") & ((1 << rest) - 1) == 0
        found.append((0 if exact else 1, (pt, model)))
    if not found:
        assert last_error is not None
        raise last_error
    found.sort(key=lambda item: item[0])
    pt, model = found[0][1]
    out = {
        "payload_type": f"{pt:#06x}",
        "namespace": exi.PAYLOAD_TYPES[pt],
        "message": exi.to_json(model),
    }
    return json.dumps(out, indent=2)


def encode_command(json_text: str) -> str:
    """Encode JSON text (see module doc) to the EXI payload as lowercase hex."""
    try:
        doc = json.loads(json_text)
    except json.JSONDecodeError as exc:
        raise ExiEncodeError(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ExiEncodeError("expected a JSON object")
    pt: int | None = None
    if "message" in doc:
        raw_pt = doc.get("payload_type")
        if raw_pt is not None:
            try:
                pt = int(raw_pt, 16) if isinstance(raw_pt, str) else int(raw_pt)
            except ValueError:
                raise ExiEncodeError(f"bad payload_type {raw_pt!r}") from None
        doc = doc["message"]
    if not isinstance(doc, dict) or len(doc) != 1:
        raise ExiEncodeError("expected exactly one root element")
    if pt is None:
        pts = exi.payload_types_of_element(next(iter(doc)))
        if not pts:
            raise ExiEncodeError(f"unknown root element {next(iter(doc))!r}")
        pt = pts[0]
    model = exi.from_json(doc, pt)
    return exi.encode(model, pt).hex()
