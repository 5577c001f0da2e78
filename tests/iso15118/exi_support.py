"""Shared helpers for the EXI tests: reference vectors, model strategies, the oracle."""

from __future__ import annotations

import base64
import enum
import json
import os
import shutil
import string
import subprocess
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from chargepoint.iso15118.exi import _codec
from chargepoint.iso15118.messages._base import ExiModel, FieldSpec

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


def field_strategy(f: FieldSpec, list_cap: int, whole: bool = True) -> st.SearchStrategy[Any]:
    """Values of one model field from its ``exi_fields`` entry (a list for list fields
    unless ``whole`` is False)."""
    if f.is_list and whole:
        lo = f.min_items
        hi = min(f.max_items if f.max_items is not None else list_cap, max(lo, list_cap))
        return st.lists(field_strategy(f, list_cap, whole=False), min_size=lo, max_size=hi)
    if f.kind == "model":
        return model_strategy(f.py_type, list_cap)
    if f.kind == "enum":
        return st.sampled_from(list(f.py_type))
    if f.kind == "bool":
        return st.booleans()
    if f.kind == "int":
        lo, hi = f.ge, f.le
        edges = [
            x
            for x in (lo, hi, 0, 1, 127, 128, -1, -129)
            if x is not None and (lo is None or x >= lo) and (hi is None or x <= hi)
        ]
        lo = lo if lo is not None else -(2**70)
        hi = hi if hi is not None else 2**70
        return st.one_of(st.sampled_from(edges), st.integers(lo, hi))
    if f.kind == "str":
        return st.text(
            alphabet=string.ascii_letters + string.digits + "-_.:",
            min_size=1,
            max_size=min(f.max_length or 12, 12),
        )
    if f.kind == "bytes":
        lo = f.min_length or 0
        hi = f.max_length if f.max_length is not None else lo + 20
        return st.binary(min_size=lo, max_size=min(hi, lo + 20))
    raise NotImplementedError(f)


_CACHE: dict[tuple[type[ExiModel], int], st.SearchStrategy[Any]] = {}


def model_strategy(cls: type[ExiModel], list_cap: int = 3) -> st.SearchStrategy[Any]:
    """Strategy producing valid instances of a generated model (choices respected)."""
    key = (cls, list_cap)
    if key in _CACHE:
        return _CACHE[key]
    choices = cls.exi_choices
    in_choice = {n for names, _lo, _hi in choices for n in names}
    plain: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for info in cls.exi_fields:
        name = info.name
        if name in in_choice:
            continue
        s = st.deferred(lambda info=info: field_strategy(info, list_cap))
        if not info.optional:
            plain[name] = s
        else:
            optional[name] = s
    choice_strats = []
    specs = {f.name: f for f in cls.exi_fields}
    for names, lo, _hi in choices:
        fields = {n: specs[n] for n in names}

        def pick(
            names: tuple[str, ...] = names, lo: int = lo, fields: dict[str, Any] = fields
        ) -> st.SearchStrategy[dict[str, Any]]:
            opts = [st.just({})] if lo == 0 else []
            for n in names:
                inner = field_strategy(fields[n], list_cap)
                opts.append(st.fixed_dictionaries({n: inner}))
            return st.one_of(*opts)

        choice_strats.append(st.deferred(pick))

    @st.composite
    def build(draw: st.DrawFn) -> ExiModel:
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
        return cls(**kwargs).validate()

    strat = build().filter(lambda m: m is not None)
    _CACHE[key] = strat
    return strat


def fields_of(model: ExiModel) -> dict[str, Any]:
    """Keyword arguments that rebuild ``model`` (the fields that are not None)."""
    return {
        f.name: getattr(model, f.name)
        for f in model.exi_fields
        if getattr(model, f.name) is not None
    }


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


def lexical(model: ExiModel) -> Any:
    """Model -> tree comparable with the oracle's XML tree (leaves as lexical forms)."""
    out: dict[str, Any] = {}
    for info in model.exi_fields:
        value = getattr(model, info.name)
        if value is None:
            continue
        out[info.alias] = _lex(value)
    if set(out) == {"value"} and not isinstance(out["value"], dict):
        return out["value"]
    return out


def _lex(value: Any) -> Any:
    if isinstance(value, ExiModel):
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
