"""Runtime helpers used by the generated EXI codec (:mod:`._codec`).

Bit-packed EXI streams are handled as one Python ``int``: the decoder keeps the
whole payload in ``v`` (``ln`` bits long) and reads ``n`` bits at position ``p``
as ``(v >> (ln - p - n)) & mask``; the encoder accumulates into ``a`` with ``n``
bits written. Reading past the end makes the shift count negative, which raises
``ValueError`` and is turned into :class:`RawDecodeError` by the generated code.
"""

from __future__ import annotations

from typing import Any


class RawDecodeError(Exception):
    """Internal: decoding stopped at bit ``pos``; ``path`` grows innermost first."""

    def __init__(self, pos: int, elem: str, msg: str) -> None:
        super().__init__(msg)
        self.pos = pos
        self.msg = msg
        self.path: list[str] = []


class RawEncodeError(Exception):
    """Internal: the model cannot be represented (value out of range, bad list length)."""


_EVENT_MSG = {
    -1: "unexpected end element",
    -2: "character data in mixed content is not supported",
    -3: "undeclared (second-level) event not supported",
    -4: "unexpected character data",
}


def bad_event(p: int, elem: str, ev: int) -> RawDecodeError:
    return RawDecodeError(p, elem, _EVENT_MSG.get(ev, f"unexpected event {ev}"))


#: ISO 15118 runs EXI with valuePartitionCapacity = 0 and valueMaxLength = 0 (the
#: settings of the reference EXIficient setup and of the captures): string values are
#: never added to the value partitions, so they are always encoded as literals. Set to
#: ``None`` for the W3C default (unbounded) - kept for completeness and tests.
VALUE_PARTITION_CAPACITY: int | None = 0


class StringTable:
    """EXI string table value partitions (global and per-qname local), per stream."""

    __slots__ = ("glist", "gmap", "local")

    def __init__(self) -> None:
        self.glist: list[str] = []
        self.gmap: dict[str, int] = {}
        self.local: dict[str, tuple[list[str], dict[str, int]]] = {}

    def add(self, key: str, s: str) -> None:
        if VALUE_PARTITION_CAPACITY is not None:
            return  # capacity 0: nothing is ever added (no bounded-capacity support)
        self.gmap.setdefault(s, len(self.glist))
        self.glist.append(s)
        part = self.local.get(key)
        if part is None:
            part = ([], {})
            self.local[key] = part
        part[1].setdefault(s, len(part[0]))
        part[0].append(s)


# ------------------------------------------------------------------ decoding


#: longest unsigned integer accepted on decode, in 7-bit groups (448 bits; the widest
#: schema integers are unsignedLong = 10 groups and X509 serial numbers <= 20 octets)
MAX_UINT_GROUPS = 64


def ruint(v: int, ln: int, p: int, first: int) -> tuple[int, int]:
    """Continue an unsigned integer whose first octet ``first`` had bit 7 set."""
    r = first & 127
    shift = 7
    while True:
        p += 8
        b = (v >> (ln - p)) & 255
        r |= (b & 127) << shift
        if b < 128:
            return r, p
        shift += 7
        if shift > 7 * MAX_UINT_GROUPS:
            raise RawDecodeError(p, "", "unsigned integer too long")


def _uint(v: int, ln: int, p: int) -> tuple[int, int]:
    p += 8
    b = (v >> (ln - p)) & 255
    if b < 128:
        return b, p
    return ruint(v, ln, p, b)


def rint(v: int, ln: int, p: int) -> tuple[int, int]:
    """EXI Integer: sign bit, then unsigned magnitude (negative: -(m + 1))."""
    p += 1
    neg = (v >> (ln - p)) & 1
    x, p = _uint(v, ln, p)
    return (-x - 1 if neg else x), p


def rstr(  # noqa: PLR0917 - hot path, positional on purpose
    v: int, ln: int, p: int, st: StringTable, key: str, max_len: int | None
) -> tuple[str, int]:
    """EXI String value with string-table lookups (local hit 0, global hit 1, miss len+2)."""
    n, p = _uint(v, ln, p)
    if n == 0:
        part = st.local.get(key)
        if part is None:
            raise RawDecodeError(p, key, "local string-table hit on an empty partition")
        w = (len(part[0]) - 1).bit_length()
        p += w
        s = part[0][(v >> (ln - p)) & ((1 << w) - 1)]
    elif n == 1:
        if not st.glist:
            raise RawDecodeError(p, key, "global string-table hit on an empty table")
        w = (len(st.glist) - 1).bit_length()
        p += w
        s = st.glist[(v >> (ln - p)) & ((1 << w) - 1)]
    else:
        n -= 2
        if n * 8 > ln - p:
            raise RawDecodeError(p, key, "string length exceeds the stream")
        chars = []
        for _ in range(n):
            c, p = _uint(v, ln, p)
            chars.append(chr(c))
        s = "".join(chars)
        if n:
            st.add(key, s)
    if max_len is not None and len(s) > max_len:
        raise RawDecodeError(p, key, "string longer than the schema allows")
    return s, p


def rbin(v: int, ln: int, p: int, min_len: int, max_len: int | None) -> tuple[bytes, int]:
    n, p = _uint(v, ln, p)
    if n * 8 > ln - p:
        raise RawDecodeError(p, "", "binary length exceeds the stream")
    if n < min_len or (max_len is not None and n > max_len):
        raise RawDecodeError(p, "", "binary length outside the schema facets")
    p += n * 8
    return ((v >> (ln - p)) & ((1 << (n * 8)) - 1)).to_bytes(n, "big"), p


# ------------------------------------------------------------------ encoding


def wuint(a: int, n: int, x: int, lo: int | None, hi: int | None) -> tuple[int, int]:
    if x < 0 or (lo is not None and x < lo) or (hi is not None and x > hi):
        raise RawEncodeError(f"value out of range: {x}")
    while x > 127:
        a = (a << 8) | 128 | (x & 127)
        n += 8
        x >>= 7
    return (a << 8) | x, n + 8


def wint(a: int, n: int, x: int, lo: int | None, hi: int | None) -> tuple[int, int]:
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        raise RawEncodeError(f"value out of range: {x}")
    if x < 0:
        return wuint((a << 1) | 1, n + 1, -x - 1, None, None)
    return wuint(a << 1, n + 1, x, None, None)


def wstr(  # noqa: PLR0917 - hot path, positional on purpose
    a: int, n: int, x: str, st: StringTable, key: str, max_len: int | None
) -> tuple[int, int]:
    if not isinstance(x, str):
        raise RawEncodeError("string expected")
    if max_len is not None and len(x) > max_len:
        raise RawEncodeError("string longer than the schema allows")
    part = st.local.get(key)
    if part is not None and x in part[1]:
        a, n = wuint(a, n, 0, None, None)
        w = (len(part[0]) - 1).bit_length()
        return (a << w) | part[1][x], n + w
    if x in st.gmap:
        a, n = wuint(a, n, 1, None, None)
        w = (len(st.glist) - 1).bit_length()
        return (a << w) | st.gmap[x], n + w
    a, n = wuint(a, n, len(x) + 2, None, None)
    for ch in x:
        a, n = wuint(a, n, ord(ch), None, None)
    if x:
        st.add(key, x)
    return a, n


def wbin(a: int, n: int, x: bytes, min_len: int, max_len: int | None) -> tuple[int, int]:
    ln = len(x)
    if ln < min_len or (max_len is not None and ln > max_len):
        raise RawEncodeError("binary length outside the schema facets")
    a, n = wuint(a, n, ln, None, None)
    return (a << (8 * ln)) | int.from_bytes(x, "big"), n + 8 * ln


#: (Exponent, Value) -> (bits, bit count) of a RationalNumber's content, i.e. the
#: events SE(Exponent) CH EE SE(Value) CH EE EE; bounded, filled on demand.
RN_CACHE: dict[tuple[int, int], tuple[int, int]] = {}
_RN_CACHE_MAX = 65536


def rn_bits(x: Any) -> tuple[int, int]:
    """Encode (and cache) the content of a RationalNumber model."""
    ex, val = x.exponent, x.value
    if type(ex) is not int or type(val) is not int:
        raise RawEncodeError("RationalNumber fields must be int")
    if not (-128 <= ex <= 127 and -32768 <= val <= 32767):
        raise RawEncodeError(f"RationalNumber out of range: {val}e{ex}")
    sg, u = (1, -val - 1) if val < 0 else (0, val)
    a, n = wuint(((ex + 128) << 4) | sg, 14, u, None, None)
    entry = (a << 2, n + 2)
    if len(RN_CACHE) < _RN_CACHE_MAX:
        RN_CACHE[(ex, val)] = entry
    return entry
