"""Typed EXI codec errors."""

from __future__ import annotations

from chargepoint.errors import LocalProtocolError, RemoteProtocolError


class ExiDecodeError(RemoteProtocolError):
    """The peer sent an EXI stream we cannot decode.

    ``path`` is the element path (root first) and ``bit_offset`` the position in
    the payload (header byte included) where decoding stopped.
    """

    def __init__(self, reason: str, path: tuple[str, ...] = (), bit_offset: int = 0) -> None:
        self.reason = reason
        self.path = path
        self.bit_offset = bit_offset
        where = "/".join(path) or "<document>"
        super().__init__(f"EXI decode error at {where} (bit {bit_offset}): {reason}")


class ExiEncodeError(LocalProtocolError):
    """A message cannot be encoded (value outside its EXI/XSD range, unknown model)."""
