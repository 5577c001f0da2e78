"""Shared helpers for the EXI tests: reference vectors, model strategies, the oracle."""

from __future__ import annotations

import base64
import enum
import json
import os
import shutil
import string
import subprocess
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
from hypothesis import strategies as st
from pydantic import BaseModel

from chargepoint.iso15118.exi import _codec
from chargepoint.iso15118.messages._base import ExiModel

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "iso15118-20"
ORACLE_SCRIPT = Path(__file__).resolve().parent / "oracle" / "exi_oracle.py"
# The oracle venv: .ci/run creates it (README: "EXI oracle"); override with the env var.
ORACLE_PYTHON = Path(
    os.environ.get("ISO15118_ORACLE_PYTHON", str(REPO / ".oracle-venv" / "bin" / "python"))
)


# ----------------------------------------------------------------- vectors


def load_vectors() -> list[tuple[str, dict[str, Any]]]:
    """(label, message) for every message of the shared captures and unit vectors."""
    out: list[tuple[str, dict[str, Any]]] = []
    for name in (
        "capture-dc-dynamic.json",
        "capture-ac-bpt-scheduled.json",
        "capture-dc-mtls.json",
    ):
        data = json.loads((SHARED / name).read_text())
        for i, m in enumerate(data["messages"]):
            out.append((f"{name}#{i}:{m['name']}", m))
    for i, m in enumerate(json.loads((SHARED / "unit-vectors.json").read_text())):
        out.append((f"unit-vectors.json#{i}:{next(iter(m['decoded']))}", m))
    return out


def normalise_vector(value: Any) -> Any:
    """Vector conventions -> to_json conventions (hex lowercase); booleans handled by caller."""
    if isinstance(value, dict):
        return {k: normalise_vector(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise_vector(v) for v in value]
    return value


def json_equal(ours: Any, vector: Any) -> bool:
    """Compare our to_json output with a vector's ``decoded`` (0/1 booleans, UPPER hex)."""
    if isinstance(ours, dict) and isinstance(vector, dict):
        return ours.keys() == vector.keys() and all(json_equal(ours[k], vector[k]) for k in ours)
    if isinstance(ours, list) and isinstance(vector, list):
        return len(ours) == len(vector) and all(
            json_equal(a, b) for a, b in zip(ours, vector, strict=True)
        )
    if isinstance(ours, bool):
        return vector in (0, 1) and int(ours) == vector and not isinstance(vector, str)
    if isinstance(ours, str) and isinstance(vector, str):
        return ours == vector or (
            ours == ours.lower()
            and ours == vector.lower()
            and all(c in string.hexdigits for c in vector)
        )
    return bool(ours == vector and type(ours) is type(vector))


# -------------------------------------------------------------- strategies

TEXT = st.text(alphabet=string.ascii_letters + string.digits + "-_.:", min_size=0, max_size=12)


def _constraints(meta: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in meta:
        if isinstance(m, annotated_types.Ge):
            out["ge"] = m.ge
        elif isinstance(m, annotated_types.Le):
            out["le"] = m.le
        elif isinstance(m, annotated_types.MinLen):
            out["min_len"] = m.min_length
        elif isinstance(m, annotated_types.MaxLen):
            out["max_len"] = m.max_length
        elif hasattr(m, "metadata"):
            out.update(_constraints(list(m.metadata)))
    return out


def _strategy(tp: Any, meta: list[Any], list_cap: int) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(tp)
        return _strategy(base, [*meta, *extra], list_cap)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _strategy(args[0], meta, list_cap)
    c = _constraints(meta)
    if origin is list:
        (item,) = typing.get_args(tp)
        lo = c.get("min_len", 0)
        hi = min(c.get("max_len", list_cap), max(lo, list_cap))
        return st.lists(_strategy(item, [], list_cap), min_size=lo, max_size=hi)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return model_strategy(tp, list_cap)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if tp is bool:
        return st.booleans()
    if tp is int:
        lo, hi = c.get("ge"), c.get("le")
        edges = [
            x
            for x in (lo, hi, 0, 1, 127, 128, -1, -129)
            if x is not None and (lo is None or x >= lo) and (hi is None or x <= hi)
        ]
        lo = lo if lo is not None else -(2**70)
        hi = hi if hi is not None else 2**70
        return st.one_of(st.sampled_from(edges), st.integers(lo, hi))
    if tp is str:
        return st.text(
            alphabet=string.ascii_letters + string.digits + "-_.:",
            min_size=1,
            max_size=min(c.get("max_len", 12), 12),
        )
    if tp is bytes:
        lo = c.get("min_len", 0)
        hi = c.get("max_len", lo + 20)
        return st.binary(min_size=lo, max_size=min(hi, lo + 20))
    raise NotImplementedError(tp)


_CACHE: dict[tuple[type[BaseModel], int], st.SearchStrategy[Any]] = {}


def model_strategy(cls: type[BaseModel], list_cap: int = 3) -> st.SearchStrategy[Any]:
    """Strategy producing valid instances of a generated model (choices respected)."""
    key = (cls, list_cap)
    if key in _CACHE:
        return _CACHE[key]
    choices: tuple[tuple[tuple[str, ...], int, int | None], ...] = getattr(cls, "_exi_choices", ())
    in_choice = {n for names, _lo, _hi in choices for n in names}
    plain: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, info in cls.model_fields.items():
        if name in in_choice:
            continue
        s = st.deferred(lambda info=info: _strategy(info.annotation, list(info.metadata), list_cap))
        if info.is_required():
            plain[name] = s
        else:
            optional[name] = s
    choice_strats = []
    for names, lo, _hi in choices:
        fields = {n: cls.model_fields[n] for n in names}

        def pick(
            names: tuple[str, ...] = names, lo: int = lo, fields: dict[str, Any] = fields
        ) -> st.SearchStrategy[dict[str, Any]]:
            opts = [st.just({})] if lo == 0 else []
            for n in names:
                info = fields[n]
                inner = _strategy(info.annotation, list(info.metadata), list_cap)
                opts.append(st.fixed_dictionaries({n: inner}))
            return st.one_of(*opts)

        choice_strats.append(st.deferred(pick))

    @st.composite
    def build(draw: st.DrawFn) -> BaseModel:
        kwargs: dict[str, Any] = {n: draw(s) for n, s in plain.items()}
        for n, s in optional.items():
            if draw(st.booleans()):
                v = draw(s)
                if v != []:
                    kwargs[n] = v
        for cs in choice_strats:
            for n, v in draw(cs).items():
                if v != []:
                    kwargs[n] = v
        return cls.model_validate(kwargs)

    strat = build().filter(lambda m: m is not None)
    _CACHE[key] = strat
    return strat


# -------------------------------------------------------------------- oracle


def oracle_available() -> str | None:
    """None when the oracle can run, else the reason to skip."""
    if not ORACLE_PYTHON.exists():
        return f"oracle python {ORACLE_PYTHON} not found (set ISO15118_ORACLE_PYTHON)"
    if shutil.which("java") is None:
        return "java not found"
    return None


def run_oracle(items: list[tuple[int, bytes]], timeout: float = 600) -> list[dict[str, Any]]:
    """Decode each payload with EXIficient (official XSDs) and re-encode its XML."""
    req = {"requests": [{"pt": pt, "exi": data.hex()} for pt, data in items]}
    proc = subprocess.run(
        [str(ORACLE_PYTHON), str(ORACLE_SCRIPT)],
        input=json.dumps(req),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"oracle failed: {proc.stderr[-2000:]}")
    results: list[dict[str, Any]] = json.loads(proc.stdout)["results"]
    return results


def lexical(model: BaseModel) -> Any:
    """Model -> tree comparable with the oracle's XML tree (leaves as lexical forms)."""
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        out[info.alias or name] = _lex(value)
    if set(out) == {"value"} and not isinstance(out["value"], dict):
        return out["value"]
    return out


def _lex(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return lexical(value)
    if isinstance(value, list):
        return [_lex(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bytes):
        return ("bin", value)
    return str(value)


def lexical_equal(ours: Any, xml: Any) -> bool:
    if isinstance(ours, tuple) and ours[0] == "bin":
        if not isinstance(xml, str):
            return ours[1] == b"" and xml == {}
        text = "".join(xml.split())
        try:
            if bytes.fromhex(text) == ours[1] and len(text) == 2 * len(ours[1]):
                return True
        except ValueError:
            pass
        try:
            return base64.b64decode(text, validate=True) == ours[1]
        except ValueError:
            return False
    if isinstance(ours, list):
        xs = xml if isinstance(xml, list) else [xml]
        return len(xs) == len(ours) and all(
            lexical_equal(a, b) for a, b in zip(ours, xs, strict=True)
        )
    if isinstance(ours, dict):
        if not isinstance(xml, dict):
            return ours == {} and xml in ("", {})
        return ours.keys() == xml.keys() and all(lexical_equal(ours[k], xml[k]) for k in ours)
    if ours == "" and xml == {}:
        return True
    return bool(ours == xml)


def all_message_classes() -> list[type[ExiModel]]:
    seen: list[type[ExiModel]] = []
    # these need xs:any wildcard content, which the codec does not support (documented)
    wildcard_only = {"SignatureProperty", "SignatureProperties"}
    for cls, _pt in _codec.ROOT_ENCODERS:
        if cls not in seen and cls.__name__ not in wildcard_only:
            seen.append(cls)
    return seen
