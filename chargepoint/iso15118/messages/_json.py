"""Models <-> JSON-compatible data (XSD names as keys), driven by ``exi_fields``.

:func:`dump`: binary as lowercase hex, enumerations as their string value,
absent (None) fields left out. :func:`load` is the inverse and validates every
schema rule; it also accepts snake_case keys, upper-case hex, 0/1 and
``"true"``/``"false"`` booleans, integral floats and decimal strings for integers.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from chargepoint.iso15118.messages._base import ExiModel, FacetError, FieldSpec, check

M = TypeVar("M", bound=ExiModel)

_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False}
_KEYS: dict[type[ExiModel], dict[str, FieldSpec]] = {}


def dump(obj: ExiModel) -> dict[str, Any]:
    """``{XSD name: value}`` of the fields that are not None (recursively)."""
    out: dict[str, Any] = {}
    for f in obj.exi_fields:
        value = getattr(obj, f.name)
        if value is None:
            continue
        if f.is_list:
            out[f.alias] = [_dump_value(f.kind, item) for item in value]
        else:
            out[f.alias] = _dump_value(f.kind, value)
    return out


def _dump_value(kind: str, value: Any) -> Any:
    if kind == "model":
        return dump(value)
    if kind == "bytes":
        return value.hex()
    if kind == "enum":
        return str(value)
    return value


def load(cls: type[M], data: object, path: str) -> M:
    """Build and validate a ``cls`` from :func:`dump`-style data; :class:`FacetError` names
    the offending field by XSD names (``path`` is the prefix, e.g. the root element)."""
    if not isinstance(data, dict):
        raise FacetError(path, f"expected an object, got {type(data).__name__}")
    keys = _KEYS.get(cls)
    if keys is None:
        keys = {f.alias: f for f in cls.exi_fields} | {f.name: f for f in cls.exi_fields}
        _KEYS[cls] = keys
    values: dict[str, Any] = {}
    for key, raw in data.items():
        f = keys.get(key) if isinstance(key, str) else None
        if f is None:
            raise FacetError(f"{path}.{key}", "unknown field")
        where = f"{path}.{f.alias}"
        if f.name in values:
            raise FacetError(where, "given twice (XSD name and Python name)")
        if raw is None:
            values[f.name] = None
        elif f.is_list:
            if not isinstance(raw, list):
                raise FacetError(where, f"expected a list, got {type(raw).__name__}")
            values[f.name] = [_load_value(f, item, f"{where}[{i}]") for i, item in enumerate(raw)]
        else:
            values[f.name] = _load_value(f, raw, where)
    obj = object.__new__(cls)
    for f in cls.exi_fields:
        setattr(obj, f.name, values.get(f.name))
    check(obj, path, by_alias=True, deep=False)
    return obj


def _load_value(f: FieldSpec, raw: Any, where: str) -> Any:
    kind = f.kind
    if kind == "model":
        if type(raw) is f.py_type:
            check(raw, where, by_alias=True)
            return raw
        return load(f.py_type, raw, where)
    if kind == "bytes":
        if isinstance(raw, bytes):
            return raw
        if not isinstance(raw, str):
            raise FacetError(where, f"expected a hex string, got {type(raw).__name__}")
        try:
            return bytes.fromhex(raw)
        except ValueError:
            raise FacetError(where, "expected a hex string") from None
    if kind == "enum":
        try:
            return f.py_type(raw)
        except ValueError:
            raise FacetError(where, f"{raw!r} is not a {f.py_type.__name__} value") from None
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return raw == 1
        if isinstance(raw, str) and raw in _BOOL_TEXT:
            return _BOOL_TEXT[raw]
        raise FacetError(where, f"expected a boolean, got {raw!r}")
    if kind == "int":
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, str) and _INT_TEXT.fullmatch(raw):
            return int(raw)
        return raw  # type errors are reported by check()
    return raw
