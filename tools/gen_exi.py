#!/usr/bin/env python3
"""Generate the ISO 15118-20 message models and the EXI codec from the XSDs.

Usage (the XSDs ship with the ``iso15118`` package; they are read, never copied)::

    python tools/gen_exi.py /path/to/site-packages/iso15118/shared/schemas [--check]

``--check`` only compares: exit status 1 if the committed files are stale.

The XSDs are pinned by content (``XSD_SHA256``, from ``iso15118==0.31.2``): a
schema directory whose files differ is refused (exit status 3), so a
regenerated codec is provably made from the same schemas as the committed one.

The schema directory must contain ``V2G_CI_AppProtocol.xsd``,
``xmldsig-core-schema.xsd`` and ``iso15118_20/V2G_CI_{CommonTypes,CommonMessages,DC,AC}.xsd``.

Outputs (committed to the repository):

* ``chargepoint/iso15118/messages/app_protocol.py``, ``xmldsig.py``, ``iso20.py``:
  message models, one plain ``__slots__`` class per XSD complex type (typed keyword-only
  ``__init__``, snake_case fields), schema facts as data (``exi_fields``, ``exi_choices``).
* ``chargepoint/iso15118/exi/_codec.py``: straight-line EXI encode/decode
  functions, one pair per complex type and grammar (namespace), derived from the
  W3C EXI 1.0 (Second Edition) schema-informed grammar rules with the ISO 15118
  settings (bit-packed, strict=false, default fidelity options).

Only the standard library is used, so any Python >= 3.11 can run it.
"""

# ruff: noqa: E501
from __future__ import annotations

import hashlib
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

XS = "http://www.w3.org/2001/XMLSchema"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
SAP = "urn:iso:15118:2:2010:AppProtocol"
CT = "urn:iso:std:iso:15118:-20:CommonTypes"
CM = "urn:iso:std:iso:15118:-20:CommonMessages"
DC = "urn:iso:std:iso:15118:-20:DC"
AC = "urn:iso:std:iso:15118:-20:AC"

# built-in integer types: (lo, hi)
BUILTIN_INT = {
    "byte": (-128, 127),
    "short": (-32768, 32767),
    "int": (-(2**31), 2**31 - 1),
    "long": (-(2**63), 2**63 - 1),
    "unsignedByte": (0, 255),
    "unsignedShort": (0, 65535),
    "unsignedInt": (0, 2**32 - 1),
    "unsignedLong": (0, 2**64 - 1),
    "integer": (None, None),
    "nonNegativeInteger": (0, None),
}
BUILTIN_STR = {"string", "anyURI", "ID", "NCName", "token", "normalizedString", "Name"}


@dataclass
class SimpleT:
    key: tuple[str, str] | None
    kind: str  # bool | int | enum | string | binary
    lo: int | None = None
    hi: int | None = None
    values: list[str] = field(default_factory=list)
    min_len: int | None = None
    max_len: int | None = None
    binfmt: str = ""  # hex | b64
    pyname: str = ""  # enum class name

    @property
    def int_repr(self) -> str:
        """EXI representation of an integer type: nbit | uint | int (EXI 1.0, 7.1.5)."""
        if self.lo is not None and self.hi is not None and self.hi - self.lo + 1 <= 4096:
            return "nbit"
        if self.lo is not None and self.lo >= 0:
            return "uint"
        return "int"

    @property
    def nbits(self) -> int:
        if self.kind == "enum":
            return (len(self.values) - 1).bit_length()
        assert self.lo is not None and self.hi is not None
        return (self.hi - self.lo).bit_length()


@dataclass
class Attr:
    name: str
    ns: str
    st: SimpleT
    required: bool


@dataclass
class ElemDecl:
    name: str
    ns: str
    type_key: tuple[str, str] | None  # complex or simple type key
    anon: ComplexT | SimpleT | None = None
    abstract: bool = False
    subst_head: tuple[str, str] | None = None
    is_global: bool = False


@dataclass
class Ref:
    """An element particle referring to a global element (substitution groups apply)."""

    key: tuple[str, str]


WILD = "*"


@dataclass
class Particle:
    alts: list[ElemDecl | Ref | str]
    min: int
    max: int | None


@dataclass
class ComplexT:
    key: tuple[str, str]
    name: str
    ns: str
    node: ET.Element | None = None
    attrs: list[Attr] = field(default_factory=list)
    particles: list[Particle] = field(default_factory=list)
    simple_content: SimpleT | None = None
    mixed: bool = False
    abstract: bool = False
    unsupported: str = ""
    resolved: bool = False
    pyname: str = ""


class UnsupportedError(Exception):
    pass


class Schema:
    def __init__(self) -> None:
        self.simple: dict[tuple[str, str], SimpleT] = {}
        self.simple_nodes: dict[tuple[str, str], tuple[ET.Element, dict[str, str]]] = {}
        self.complex: dict[tuple[str, str], ComplexT] = {}
        self.elements: dict[tuple[str, str], ElemDecl] = {}
        self.nsmaps: dict[int, dict[str, str]] = {}
        self.loaded: set[Path] = set()
        self.file_ns: dict[Path, str] = {}
        self.file_globals: dict[str, list[tuple[str, str]]] = {}
        self.imports: dict[str, set[str]] = {}
        self.form_qualified: dict[str, tuple[bool, bool]] = {}

    # ------------------------------------------------------------- loading
    def load(self, path: Path) -> str:
        path = path.resolve()
        if path in self.loaded:
            return self.file_ns[path]
        self.loaded.add(path)
        nsmap: dict[str, str] = {}
        for _ev, (prefix, uri) in ET.iterparse(path, events=("start-ns",)):
            nsmap.setdefault(prefix, uri)
        root = ET.parse(path).getroot()
        tns = root.get("targetNamespace", "")
        self.file_ns[path] = tns
        self.form_qualified[tns] = (
            root.get("elementFormDefault") == "qualified",
            root.get("attributeFormDefault") == "qualified",
        )
        self.imports.setdefault(tns, set())
        for imp in root.findall(f"{{{XS}}}import"):
            loc = imp.get("schemaLocation")
            assert loc
            target = path.parent / loc
            if not target.exists():  # xmldsig sits one level up in the iso15118 package
                target = path.parent.parent / loc
            other = self.load(target)
            self.imports[tns].add(other)
        self.file_globals.setdefault(tns, [])
        for child in root:
            tag = child.tag.split("}")[1]
            name = child.get("name")
            if tag == "simpleType":
                assert name
                self.simple_nodes[(tns, name)] = (child, nsmap)
            elif tag == "complexType":
                assert name
                self.complex[(tns, name)] = ComplexT(
                    (tns, name), name, tns, child, abstract=child.get("abstract") == "true"
                )
                self.nsmaps[id(child)] = nsmap
            elif tag == "element":
                assert name
                decl = self._element_decl(child, nsmap, tns, is_global=True)
                self.elements[(tns, name)] = decl
                self.file_globals[tns].append((tns, name))
        return tns

    def qname(self, text: str, nsmap: dict[str, str]) -> tuple[str, str]:
        if ":" in text:
            prefix, local = text.split(":", 1)
            return (nsmap[prefix], local)
        return (nsmap.get("", ""), text)

    def _element_decl(
        self, node: ET.Element, nsmap: dict[str, str], tns: str, is_global: bool
    ) -> ElemDecl:
        name = node.get("name")
        assert name
        type_attr = node.get("type")
        decl = ElemDecl(
            name,
            tns if (is_global or self.form_qualified[tns][0]) else "",
            self.qname(type_attr, nsmap) if type_attr else None,
            abstract=node.get("abstract") == "true",
            subst_head=(
                self.qname(node.get("substitutionGroup", ""), nsmap)
                if node.get("substitutionGroup")
                else None
            ),
            is_global=is_global,
        )
        if type_attr is None:
            ct = node.find(f"{{{XS}}}complexType")
            stn = node.find(f"{{{XS}}}simpleType")
            if ct is not None:
                anon = ComplexT((tns, "#" + name), name, tns, ct)
                self.nsmaps[id(ct)] = nsmap
                decl.anon = anon
            elif stn is not None:
                decl.anon = self._simple_from_node(stn, nsmap, None)
            else:
                raise UnsupportedError(f"element {name} without type")
        return decl

    # --------------------------------------------------------- simple types
    def simple_type(self, key: tuple[str, str]) -> SimpleT:
        if key in self.simple:
            return self.simple[key]
        if key[0] == XS:
            local = key[1]
            if local == "boolean":
                st = SimpleT(key, "bool")
            elif local in BUILTIN_INT:
                lo, hi = BUILTIN_INT[local]
                st = SimpleT(key, "int", lo, hi)
            elif local in BUILTIN_STR:
                st = SimpleT(key, "string")
            elif local == "hexBinary":
                st = SimpleT(key, "binary", binfmt="hex")
            elif local == "base64Binary":
                st = SimpleT(key, "binary", binfmt="b64")
            else:
                raise UnsupportedError(f"builtin {local}")
        else:
            node, nsmap = self.simple_nodes[key]
            st = self._simple_from_node(node, nsmap, key)
        self.simple[key] = st
        return st

    def _simple_from_node(
        self, node: ET.Element, nsmap: dict[str, str], key: tuple[str, str] | None
    ) -> SimpleT:
        restr = node.find(f"{{{XS}}}restriction")
        if restr is None:
            raise UnsupportedError("simpleType without restriction")
        base = self.simple_type(self.qname(restr.get("base", ""), nsmap))
        st = SimpleT(
            key,
            base.kind,
            base.lo,
            base.hi,
            list(base.values),
            base.min_len,
            base.max_len,
            base.binfmt,
        )
        enums = [e.get("value", "") for e in restr.findall(f"{{{XS}}}enumeration")]
        if enums:
            st.kind = "enum"
            st.values = enums
            name = key[1] if key else "Anon"
            st.pyname = name[0].upper() + name[1:]
            if st.pyname.endswith("Type"):
                st.pyname = st.pyname[:-4]
        for facet in restr:
            tag = facet.tag.split("}")[1]
            val = facet.get("value", "")
            if tag == "minInclusive":
                st.lo = int(val)
            elif tag == "maxInclusive":
                st.hi = int(val)
            elif tag == "minExclusive":
                st.lo = int(val) + 1
            elif tag == "maxExclusive":
                st.hi = int(val) - 1
            elif tag == "length":
                st.min_len = st.max_len = int(val)
            elif tag == "minLength":
                st.min_len = int(val)
            elif tag == "maxLength":
                st.max_len = int(val)
            elif tag in ("enumeration", "annotation"):
                pass
            else:
                raise UnsupportedError(f"facet {tag}")
        return st

    # -------------------------------------------------------- complex types
    def complex_type(self, key: tuple[str, str]) -> ComplexT:
        ct = self.complex[key]
        self.resolve(ct)
        return ct

    def resolve(self, ct: ComplexT) -> None:
        if ct.resolved:
            return
        ct.resolved = True
        node = ct.node
        assert node is not None
        nsmap = self.nsmaps[id(node)]
        ct.mixed = node.get("mixed") == "true"
        attrs: list[Attr] = []
        particles: list[Particle] = []
        try:
            cc = node.find(f"{{{XS}}}complexContent")
            sc = node.find(f"{{{XS}}}simpleContent")
            if cc is not None:
                ext = cc.find(f"{{{XS}}}extension")
                if ext is None:
                    raise UnsupportedError("complexContent restriction")
                base = self.complex_type(self.qname(ext.get("base", ""), nsmap))
                if base.unsupported:
                    raise UnsupportedError(base.unsupported)
                attrs.extend(base.attrs)
                particles.extend(base.particles)
                ct.mixed = ct.mixed or base.mixed
                body = ext
            elif sc is not None:
                ext = sc.find(f"{{{XS}}}extension")
                if ext is None:
                    raise UnsupportedError("simpleContent restriction")
                ct.simple_content = self.simple_type(self.qname(ext.get("base", ""), nsmap))
                body = ext
            else:
                body = node
            for child in body:
                tag = child.tag.split("}")[1]
                if tag in ("sequence", "choice"):
                    particles.extend(self.flatten(child, nsmap, ct.ns))
                elif tag == "attribute":
                    aname = child.get("name")
                    assert aname
                    qualified = self.form_qualified[ct.ns][1]
                    attrs.append(
                        Attr(
                            aname,
                            ct.ns if qualified else "",
                            self.simple_type(self.qname(child.get("type", ""), nsmap)),
                            child.get("use") == "required",
                        )
                    )
                elif tag == "anyAttribute":
                    raise UnsupportedError("anyAttribute")
                elif tag == "annotation":
                    pass
                else:
                    raise UnsupportedError(tag)
        except UnsupportedError as exc:
            ct.unsupported = str(exc) or "unsupported"
            return
        attrs.sort(key=lambda a: (a.name, a.ns))
        ct.attrs = attrs
        ct.particles = particles

    def flatten(self, node: ET.Element, nsmap: dict[str, str], tns: str) -> list[Particle]:
        tag = node.tag.split("}")[1]
        mn = int(node.get("minOccurs", "1"))
        mx_s = node.get("maxOccurs", "1")
        mx = None if mx_s == "unbounded" else int(mx_s)
        if tag == "element":
            if node.get("ref"):
                return [Particle([Ref(self.qname(node.get("ref", ""), nsmap))], mn, mx)]
            return [Particle([self._element_decl(node, nsmap, tns, False)], mn, mx)]
        if tag == "any":
            return [Particle([WILD], mn, mx)]
        children = [c for c in node if c.tag.split("}")[1] != "annotation"]
        if tag == "sequence":
            if mn == 1 and mx == 1:
                out: list[Particle] = []
                for c in children:
                    out.extend(self.flatten(c, nsmap, tns))
                return out
            if len(children) == 1:
                inner = self.flatten(children[0], nsmap, tns)
                if len(inner) == 1 and inner[0].min == 1 and inner[0].max == 1:
                    return [Particle(inner[0].alts, mn, mx)]
            raise UnsupportedError("repeated/optional sequence group")
        if tag == "choice":
            alts: list[ElemDecl | Ref | str] = []
            for c in children:
                inner = self.flatten(c, nsmap, tns)
                if len(inner) != 1 or inner[0].min != 1 or inner[0].max != 1:
                    raise UnsupportedError("choice of groups")
                alts.extend(inner[0].alts)
            return [Particle(alts, mn, mx)]
        raise UnsupportedError(tag)


# ---------------------------------------------------------------------------
# grammar universes (one per V2GTP payload type)
# ---------------------------------------------------------------------------


@dataclass
class Universe:
    uid: int
    name: str
    root_ns: str
    namespaces: list[str]
    globals_sorted: list[tuple[str, str]] = field(default_factory=list)


def subst_members(schema: Schema, head: tuple[str, str], namespaces: list[str]) -> list[ElemDecl]:
    """Non-abstract elements that may appear for a reference to ``head``, sorted
    by local name then namespace (the head itself included unless abstract)."""
    out: list[ElemDecl] = []
    todo = [head]
    seen: set[tuple[str, str]] = set()
    while todo:
        k = todo.pop()
        if k in seen:
            continue
        seen.add(k)
        decl = schema.elements[k]
        if not decl.abstract:
            out.append(decl)
        for k2, d2 in schema.elements.items():
            if d2.subst_head == k and k2[0] in namespaces:
                todo.append(k2)
    out.sort(key=lambda d: (d.name, d.ns))
    return out


def type_of(schema: Schema, decl: ElemDecl) -> ComplexT | SimpleT:
    if decl.anon is not None:
        if isinstance(decl.anon, ComplexT):
            schema.resolve(decl.anon)
        return decl.anon
    assert decl.type_key is not None
    if decl.type_key in schema.complex:
        return schema.complex_type(decl.type_key)
    return schema.simple_type(decl.type_key)


def expand_alts(schema: Schema, p: Particle, namespaces: list[str]) -> list[ElemDecl | str]:
    out: list[ElemDecl | str] = []
    for a in p.alts:
        if isinstance(a, Ref):
            out.extend(subst_members(schema, a.key, namespaces))
        else:
            out.append(a)
    return out


# ---------------------------------------------------------------------------
# naming helpers
# ---------------------------------------------------------------------------


def snake(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.replace("__", "_").lower()


def class_name(ct: ComplexT) -> str:
    n = ct.name[:-4] if ct.name.endswith("Type") and not ct.key[1].startswith("#") else ct.name
    return n[0].upper() + n[1:]


KEYWORDS = {"from", "class", "def", "if", "else", "in", "is", "not", "and", "or", "for"}
# names that would clash with (formerly pydantic) model attributes get a trailing "_";
# kept as it was so that field names never change (no XSD name is affected today)
BASEMODEL_ATTRS = {"copy", "json", "dict", "schema", "construct", "validate", "fields"}


def field_name(xsd_name: str) -> str:
    s = snake(xsd_name)
    if s in KEYWORDS or s in BASEMODEL_ATTRS or s.startswith("model_"):
        s += "_"
    return s


# ---------------------------------------------------------------------------
# grammar (per universe and complex type)
# ---------------------------------------------------------------------------

EE, CH, ESC, CHT = -1, -2, -3, -4
# source of the empty value of a string / binary simple type
EMPTY = {"string": "''", "binary": "b''"}


@dataclass
class Sym:
    sid: int
    kind: str  # AT | SE | SEW
    step: int  # attribute index or particle index
    alt: int = 0
    decl: ElemDecl | None = None
    attr: Attr | None = None


class Grammar:
    """Schema-informed element grammar of one complex type, as a state function.

    States are canonicalised as the tuple of their first-level productions; the event
    code of a production is its index in that tuple and every state also has the
    second-level escape (strict=false), so the width is ceil(log2(len + 1)).
    """

    def __init__(self, schema: Schema, ct: ComplexT, uni: Universe) -> None:
        self.ct = ct
        self.uni = uni
        self.attrs = ct.attrs
        self.parts: list[list[ElemDecl | str]] = []
        self.pmin: list[int] = []
        self.pmax: list[int | None] = []
        self.syms: list[Sym] = []
        self.at_sym: list[int] = []
        self.se_sym: list[list[int]] = []
        for k, a in enumerate(self.attrs):
            self.syms.append(Sym(len(self.syms), "AT", k, attr=a))
            self.at_sym.append(len(self.syms) - 1)
        for i, p in enumerate(ct.particles):
            alts = expand_alts(schema, p, uni.namespaces)
            self.parts.append(alts)
            self.pmin.append(p.min)
            self.pmax.append(p.max)
            ids = []
            for j, a in enumerate(alts):
                if isinstance(a, str):
                    self.syms.append(Sym(len(self.syms), "SEW", i, j))
                else:
                    self.syms.append(Sym(len(self.syms), "SE", i, j, decl=a))
                ids.append(len(self.syms) - 1)
            self.se_sym.append(ids)

    def _order(self, sym: int) -> tuple[int, int]:
        # event-code order: AT(qname) (sorted), SE(qname) (schema order), SE(*), EE, CH
        if sym >= 0:
            s = self.syms[sym]
            if s.kind == "AT":
                return (0, sym)
            if s.kind == "SE":
                return (1, sym)
            return (2, sym)
        return {EE: (3, 0), CH: (4, 0), CHT: (4, 0)}[sym]

    def _norm(self, prods: list[int]) -> tuple[int, ...]:
        out: list[int] = []
        seen_wild = False
        for s in sorted(prods, key=self._order):
            if s >= 0 and self.syms[s].kind == "SEW":
                if seen_wild:
                    continue
                seen_wild = True
            if s in out:
                continue
            out.append(s)
        return tuple(out)

    def content_prods(self, i: int, c: int) -> list[int]:
        """Productions in particle state (i, c) (count c of particle i seen)."""
        n = len(self.parts)
        if self.ct.simple_content is not None:
            return [CHT]
        if i >= n:
            res = [EE]
        else:
            mx = self.pmax[i]
            res = []
            if mx is None or c < mx:
                res.extend(self.se_sym[i])
            if c >= self.pmin[i]:
                res.extend(self.content_prods(i + 1, 0))
        if self.ct.mixed:
            res.append(CH)
        return res

    def attr_prods(self, k: int) -> list[int]:
        if k >= len(self.attrs):
            return self.content_prods(0, 0)
        res = [self.at_sym[k]]
        if not self.attrs[k].required:
            res.extend(self.attr_prods(k + 1))
        return res

    def start(self) -> tuple[int, ...]:
        return self._norm(self.attr_prods(0))

    def after_attr(self, k: int) -> tuple[int, ...]:
        return self._norm(self.attr_prods(k + 1))

    def after_particle(self, i: int, c: int) -> tuple[int, ...]:
        return self._norm(self.content_prods(i, c))


def width(state: tuple[int, ...]) -> int:
    return len(state).bit_length()  # ceil(log2(len + 1)): the +1 is the escape


# ---------------------------------------------------------------------------
# model field inventory (shared by the model and the codec generators)
# ---------------------------------------------------------------------------

RN_KEY = (CT, "RationalNumberType")


@dataclass
class MField:
    name: str  # python name
    alias: str  # XSD name
    ann: str  # python annotation (without optional / list)
    kind: str  # attr | elem | text
    decl: ElemDecl | None = None
    attr: Attr | None = None
    st: SimpleT | None = None
    ct: ComplexT | None = None
    optional: bool = False
    is_list: bool = False
    min: int = 1
    max: int | None = 1


class Gen:
    def __init__(self, schema: Schema, universes: list[Universe]) -> None:
        self.schema = schema
        self.unis = universes
        self.home: dict[tuple[str, str], Universe] = {}
        self.types: list[ComplexT] = []
        self.enums: dict[str, SimpleT] = {}
        self.fields: dict[tuple[str, str], list[MField]] = {}
        self.grammars: dict[tuple[int, tuple[str, str]], Grammar] = {}
        self.tables: dict[tuple[int, ...], str] = {}
        self.consts: list[str] = []
        self.kcount = 0
        self._collect()

    # ---------------------------------------------------------- collection
    def module_of_ns(self, ns: str) -> str:
        return {SAP: "app_protocol", DSIG: "xmldsig"}.get(ns, "iso20")

    def _collect(self) -> None:
        seen: set[tuple[str, str]] = set()
        for uni in self.unis:
            for gk in uni.globals_sorted:
                decl = self.schema.elements[gk]
                self._visit_decl(decl, uni, seen)

    def _visit_decl(self, decl: ElemDecl, uni: Universe, seen: set[tuple[str, str]]) -> None:
        t = type_of(self.schema, decl)
        if isinstance(t, SimpleT):
            self._note_simple(t)
            return
        if t.unsupported or t.abstract:
            return
        if (uni.uid, t.key) in self.grammars:
            return
        self.grammars[(uni.uid, t.key)] = Grammar(self.schema, t, uni)
        if t.key not in seen:
            seen.add(t.key)
            t.pyname = class_name(t)
            self.home[t.key] = uni
            self.types.append(t)
        g = self.grammars[(uni.uid, t.key)]
        for a in t.attrs:
            self._note_simple(a.st)
        if t.simple_content is not None:
            self._note_simple(t.simple_content)
        for alts in g.parts:
            for a in alts:
                if isinstance(a, ElemDecl):
                    self._visit_decl(a, uni, seen)

    def _note_simple(self, st: SimpleT) -> None:
        if st.kind == "enum":
            mod = self.module_of_ns(st.key[0] if st.key else "")
            self.enums[mod + "." + st.pyname] = st

    def ann_simple(self, st: SimpleT) -> str:
        """Python type of a simple type (the facets go to ``exi_fields``)."""
        if st.kind == "enum":
            return st.pyname
        return {"bool": "bool", "int": "int", "string": "str", "binary": "bytes"}[st.kind]

    def model_fields(self, ct: ComplexT) -> list[MField]:
        if ct.key in self.fields:
            return self.fields[ct.key]
        g = self.grammars[(self.home[ct.key].uid, ct.key)]
        out: list[MField] = []
        for a in ct.attrs:
            out.append(
                MField(
                    field_name(a.name),
                    a.name,
                    self.ann_simple(a.st),
                    "attr",
                    attr=a,
                    st=a.st,
                    optional=not a.required,
                )
            )
        if ct.simple_content is not None:
            out.append(
                MField(
                    "value",
                    "value",
                    self.ann_simple(ct.simple_content),
                    "text",
                    st=ct.simple_content,
                )
            )
        for i, alts in enumerate(g.parts):
            real = [a for a in alts if isinstance(a, ElemDecl) and self.usable(a)]
            for a in real:
                t = type_of(self.schema, a)
                if isinstance(t, SimpleT):
                    mf = MField(
                        field_name(a.name), a.name, self.ann_simple(t), "elem", decl=a, st=t
                    )
                else:
                    mf = MField(field_name(a.name), a.name, t.pyname, "elem", decl=a, ct=t)
                mf.min, mf.max = g.pmin[i], g.pmax[i]
                mf.is_list = g.pmax[i] is None or (g.pmax[i] or 0) > 1
                mf.optional = g.pmin[i] == 0 or len(real) > 1
                if mf.is_list and len(real) > 1:
                    mf.min = 0
                out.append(mf)
        names = [f.name for f in out]
        assert len(names) == len(set(names)), (ct.key, names)
        self.fields[ct.key] = out
        return out

    def usable(self, decl: ElemDecl) -> bool:
        t = type_of(self.schema, decl)
        return isinstance(t, SimpleT) or not (t.unsupported or t.abstract)

    def choices(self, ct: ComplexT) -> list[tuple[list[str], int, int | None]]:
        g = self.grammars[(self.home[ct.key].uid, ct.key)]
        res = []
        for i, alts in enumerate(g.parts):
            real = [a for a in alts if isinstance(a, ElemDecl) and self.usable(a)]
            if len(real) > 1:
                res.append(([field_name(a.name) for a in real], g.pmin[i], g.pmax[i]))
        return res

    # ---------------------------------------------------------------- models
    def field_spec(self, f: MField) -> str:
        """``FieldSpec(...)`` source of one field (see messages/_base.py)."""
        if f.ct is not None:
            kind, tp = "model", f.ct.pyname
        else:
            assert f.st is not None
            kind = {"bool": "bool", "int": "int", "string": "str", "binary": "bytes"}.get(
                f.st.kind, "enum"
            )
            tp = self.ann_simple(f.st)
        args = [repr(f.name), repr(f.alias), repr(kind), tp]
        if f.optional:
            args.append("optional=True")
        if f.is_list:
            # a present list has at least one item (an absent one is None)
            args += ["is_list=True", f"min_items={f.min or 1}", f"max_items={f.max}"]
        st = f.st
        if st is not None and st.kind == "int":
            args += [f"ge={st.lo}", f"le={st.hi}"]
        if st is not None and st.kind in ("string", "binary"):
            if st.min_len is not None:
                args.append(f"min_length={st.min_len}")
            if st.max_len is not None:
                args.append(f"max_length={st.max_len}")
        return f"_F({', '.join(args)})"

    def emit_models(self, module: str) -> str:
        lines = [
            f'"""ISO 15118 message models: {module} (GENERATED by tools/gen_exi.py, do not edit).',
            "",
            "Class = XSD complex type (without the ``Type`` suffix), fields in XSD order with",
            "snake_case names; ``exi_fields`` gives each field's XSD name and facets,",
            "``exi_choices`` the xs:choice rules (see messages/_base.py and docs/exi.md).",
            '"""',
            "",
            # RUF023: __slots__ are in XSD order on purpose
            "# ruff: noqa: E501, N814, RUF023" + (", N801" if module == "iso20" else ""),
            "from __future__ import annotations",
            "",
            "from enum import StrEnum",
            "",
            "from chargepoint.iso15118.messages._base import ExiModel, RationalNumberMixin",
            "from chargepoint.iso15118.messages._base import FieldSpec as _F",
        ]
        types = [t for t in self.types if self.module_of_ns(t.ns) == module]
        imports: dict[str, set[str]] = {}
        for t in types:
            for f in self.model_fields(t):
                if f.ct is not None and self.module_of_ns(f.ct.ns) != module:
                    imports.setdefault(self.module_of_ns(f.ct.ns), set()).add(f.ct.pyname)
        for mod, names in sorted(imports.items()):
            lines.append(
                f"from chargepoint.iso15118.messages.{mod} import {', '.join(sorted(names))}"
            )
        lines += ["", "_ = (RationalNumberMixin, StrEnum)", ""]
        for key, st in sorted(self.enums.items()):
            if not key.startswith(module + "."):
                continue
            lines += [
                "",
                f"class {st.pyname}(StrEnum):",
                f'    """XSD enumeration ``{st.key[1] if st.key else ""}``."""',
                "",
            ]
            for v in st.values:
                ident = re.sub(r"\W", "_", v)
                lines.append(f"    {ident} = {v!r}")
            lines.append("")
        reserved = {"exi_fields", "exi_choices", "validate", "to_decimal", "from_decimal"}
        for t in types:
            bases = "RationalNumberMixin, ExiModel" if t.key == RN_KEY else "ExiModel"
            fields = self.model_fields(t)
            assert not reserved & {f.name for f in fields}, (t.key, fields)
            lines += ["", f"class {t.pyname}({bases}):"]
            lines.append(f'    """XSD ``{t.key[1].lstrip("#")}`` ({t.ns})."""')
            lines.append("")
            lines.append(f"    __slots__ = {tuple(f.name for f in fields)!r}")
            if not fields:
                # typed: the base's (type-checking only) __init__ takes any keywords
                lines += ["", "    def __init__(self) -> None:", "        pass", ""]
                continue
            anns = []
            params = []
            for f in fields:
                ann = f"list[{f.ann}]" if f.is_list else f.ann
                if f.optional:
                    ann += " | None"
                anns.append(f"    {f.name}: {ann}")
                params.append(f"        {f.name}: {ann}{' = None' if f.optional else ''},")
            lines += ["", *anns, "", "    def __init__(", "        self,", "        *,", *params]
            lines.append("    ) -> None:")
            lines += [f"        self.{f.name} = {f.name}" for f in fields]
            lines.append("")
        lines += ["", "# schema facts as data (after the classes: fields refer to later ones)"]
        for t in types:
            fields = self.model_fields(t)
            if fields:
                lines.append(f"{t.pyname}.exi_fields = (")
                lines += [f"    {self.field_spec(f)}," for f in fields]
                lines.append(")")
            ch = self.choices(t)
            if ch:
                lines.append(
                    f"{t.pyname}.exi_choices = {tuple((tuple(a), b, c) for a, b, c in ch)!r}"
                )
        return "\n".join(lines) + "\n"

    # ----------------------------------------------------------------- codec
    def emit_codec(self) -> str:
        body: list[str] = []
        for uni in self.unis:
            for (uid, key), g in self.grammars.items():
                if uid != uni.uid or self.canon(uid, key) != uid:
                    continue
                body += self.emit_decoder(g)
                body += self.emit_encoder(g)
        head = [
            '"""Schema-informed EXI codec for ISO 15118-20 (GENERATED by tools/gen_exi.py, do not edit).',
            "",
            "One decode and one encode function per (grammar, complex type); see docs/exi.md.",
            '"""',
            "",
            "# ruff: noqa: E501, N802, F841, F842, PLR1714",
            "from __future__ import annotations",
            "",
            "from typing import Any",
            "",
            "from chargepoint.iso15118.exi._rt import (",
            "    RN_CACHE,",
            "    RawDecodeError,",
            "    RawEncodeError,",
            "    StringTable,",
            "    bad_event,",
            "    rbin,",
            "    rint,",
            "    rn_bits,",
            "    rstr,",
            "    ruint,",
            "    wbin,",
            "    wint,",
            "    wstr,",
            "    wuint,",
            ")",
            "from chargepoint.iso15118.messages import app_protocol as _sap",
            "from chargepoint.iso15118.messages import iso20 as _i20",
            "from chargepoint.iso15118.messages import xmldsig as _ds",
            "",
            "_ERRS = (ValueError, IndexError, KeyError, OverflowError, MemoryError, RecursionError, TypeError)",
            "_RN = _i20.RationalNumber",
            "_RNE = RN_CACHE",
            "# models are built without their __init__ (slots filled directly, nothing checked:",
            "# the decoder has checked every facet itself)",
            "_new = object.__new__",
            "# booleans: only True/False (and 0/1, which hash alike) are encoded",
            "_B = {False: 0, True: 1}",
            "",
        ]
        for key in sorted(self.enums):
            mod, name = key.split(".")
            alias = {"app_protocol": "_sap", "xmldsig": "_ds", "iso20": "_i20"}[mod]
            head.append(f"_EV_{mod}_{name} = tuple({alias}.{name})")
            head.append(f"_EI_{mod}_{name} = {{m: i for i, m in enumerate(_EV_{mod}_{name})}}")
        head.append("")
        for tup, nm in self.tables.items():
            head.append(f"{nm} = {tup!r}")
        head += self.consts
        head.append("")
        tail = self.emit_roots()
        return "\n".join(head + body + tail) + "\n"

    def cls_ref(self, ct: ComplexT) -> str:
        mod = self.module_of_ns(ct.ns)
        return {"app_protocol": "_sap", "xmldsig": "_ds", "iso20": "_i20"}[mod] + "." + ct.pyname

    def enum_ref(self, st: SimpleT, prefix: str) -> str:
        mod = self.module_of_ns(st.key[0] if st.key else "")
        return f"_{prefix}_{mod}_{st.pyname}"

    def table(self, state: tuple[int, ...]) -> str:
        tup = (*state, ESC)
        if tup not in self.tables:
            self.tables[tup] = f"_T{len(self.tables)}"
        return self.tables[tup]

    def read(self, state: tuple[int, ...], ind: str) -> list[str]:
        w = width(state)
        return [
            f"{ind}p += {w}",
            f"{ind}ev = {self.table(state)}[(v >> (ln - p)) & {(1 << w) - 1}]",
        ]

    def fn(self, kind: str, g: Grammar, ct: ComplexT | None = None) -> str:
        ct = ct or g.ct
        return f"_{kind}{self.canon(g.uni.uid, ct.key):x}_{ct.pyname}"

    def canon(self, uid: int, key: tuple[str, str]) -> int:
        """First grammar (payload type) whose grammar for ``key`` is identical: the
        functions of identical grammars are generated once and shared."""
        memo = self.__dict__.setdefault("_canon", {})
        if (uid, key) in memo:
            return int(memo[(uid, key)])
        memo[(uid, key)] = uid  # provisional (recursion guard)
        g = self.grammars[(uid, key)]

        def shape(gr: Grammar, u: int) -> tuple[object, ...]:
            out: list[object] = []
            for alts in gr.parts:
                for a in alts:
                    if isinstance(a, str):
                        out.append(a)
                        continue
                    t = type_of(self.schema, a)
                    child = None
                    if isinstance(t, ComplexT) and (u, t.key) in self.grammars:
                        child = self.canon(u, t.key)
                    out.append((id(a), child))
            return (tuple(out), tuple(gr.pmin), tuple(gr.pmax))

        mine = shape(g, uid)
        for uni in self.unis:
            if uni.uid == uid:
                break
            other = self.grammars.get((uni.uid, key))
            if other is not None and shape(other, uni.uid) == mine:
                memo[(uid, key)] = self.canon(uni.uid, key)
                break
        return int(memo[(uid, key)])

    @staticmethod
    def qkey(ns: str, name: str) -> str:
        return f"{{{ns}}}{name}"

    # ------------------------------------------------------------- decoding
    def dec_value(self, st: SimpleT, qkey: str, ind: str) -> list[str]:
        """Code leaving the decoded simple value in ``x`` (no CH/EE events)."""
        out: list[str] = []
        if st.kind == "bool":
            out += [f"{ind}p += 1", f"{ind}x = ((v >> (ln - p)) & 1) == 1"]
        elif st.kind == "enum":
            w = st.nbits
            out += [
                f"{ind}p += {w}",
                f"{ind}x = {self.enum_ref(st, 'EV')}[(v >> (ln - p)) & {(1 << w) - 1}]",
            ]
        elif st.kind == "int":
            rep = st.int_repr
            if rep == "nbit":
                assert st.lo is not None and st.hi is not None
                w = st.nbits
                out += [f"{ind}p += {w}", f"{ind}x = ((v >> (ln - p)) & {(1 << w) - 1}) + {st.lo}"]
                if (1 << w) - 1 > st.hi - st.lo:
                    out.append(f"{ind}if x > {st.hi}:")
                    out.append(f"{ind}    raise RawDecodeError(p, e_, 'value out of range')")
            elif rep == "uint":
                out += [
                    f"{ind}p += 8",
                    f"{ind}x = (v >> (ln - p)) & 255",
                    f"{ind}if x > 127:",
                    f"{ind}    x, p = ruint(v, ln, p, x)",
                ]
                conds = []
                if st.lo:
                    conds.append(f"x < {st.lo}")
                if st.hi is not None:
                    conds.append(f"x > {st.hi}")
                if conds:
                    out.append(f"{ind}if {' or '.join(conds)}:")
                    out.append(f"{ind}    raise RawDecodeError(p, e_, 'value out of range')")
            else:
                out += [f"{ind}x, p = rint(v, ln, p)"]
                conds = []
                if st.lo is not None:
                    conds.append(f"x < {st.lo}")
                if st.hi is not None:
                    conds.append(f"x > {st.hi}")
                if conds:
                    out.append(f"{ind}if {' or '.join(conds)}:")
                    out.append(f"{ind}    raise RawDecodeError(p, e_, 'value out of range')")
        elif st.kind == "string":
            out.append(f"{ind}x, p = rstr(v, ln, p, st, {qkey!r}, {st.max_len})")
        elif st.kind == "binary":
            out.append(f"{ind}x, p = rbin(v, ln, p, {st.min_len or 0}, {st.max_len})")
        else:
            raise AssertionError(st.kind)
        return out

    def dec_child(
        self,
        g: Grammar,
        decl: ElemDecl,
        ind: str,
        tail: tuple[int, ...] | None = None,
        target: str = "x",
    ) -> tuple[list[str], bool]:
        """Decode one child into ``target``; True if the next event read (state ``tail``)
        was merged into the child's code (only RationalNumber does that)."""
        t = type_of(self.schema, decl)
        if isinstance(t, ComplexT) and t.key == RN_KEY:
            return self.dec_rn(decl, ind, tail, target), tail is not None
        if isinstance(t, SimpleT) and (
            t.kind in ("bool", "enum") or (t.kind == "int" and t.int_repr == "nbit")
        ):
            return self.dec_fixed(decl, t, ind, tail, target), tail is not None
        out = self._dec_child(g, decl, ind)
        if target != "x":
            out.append(f"{ind}{target} = x")
        return out, False

    def dec_rn(
        self, decl: ElemDecl, ind: str, tail: tuple[int, ...] | None, target: str
    ) -> list[str]:
        # RationalNumber content, 22 bits read at once: SE(Exponent) CH [8-bit exponent]
        # EE SE(Value) CH [sign] [first octet of the magnitude]; then EE EE.
        chk = (1 << 21) | (1 << 20) | (1 << 11) | (1 << 10) | (1 << 9)
        out = [
            f"{ind}e_ = {decl.name!r}",
            f"{ind}p += 22",
            f"{ind}t = (v >> (ln - p)) & 4194303",
            f"{ind}if t & {chk}:",
            f"{ind}    raise bad_event(p, e_, -3)",
            f"{ind}x = t & 255",
            f"{ind}if x > 127:",
            f"{ind}    x, p = ruint(v, ln, p, x)",
            f"{ind}    if x > 32767:",
            f"{ind}        raise RawDecodeError(p, e_, 'RationalNumber value out of range')",
            f"{ind}if t & 256:",
            f"{ind}    x = -x - 1",
            f"{ind}o = _new(_RN)",
            f"{ind}o.exponent = ((t >> 12) & 255) - 128",
            f"{ind}o.value = x",
            f"{ind}{target} = o",
        ]
        if tail is None:
            out += [
                f"{ind}p += 2",
                f"{ind}if (v >> (ln - p)) & 3:",
                f"{ind}    raise bad_event(p, e_, -3)",
            ]
        else:
            w = width(tail)
            out += [
                f"{ind}p += {w + 2}",
                f"{ind}t = (v >> (ln - p)) & {(1 << (w + 2)) - 1}",
                f"{ind}if t >> {w}:",
                f"{ind}    raise bad_event(p, e_, -3)",
                f"{ind}ev = {self.table(tail)}[t & {(1 << w) - 1}]",
            ]
        return out

    def dec_fixed(
        self, decl: ElemDecl, t: SimpleT, ind: str, tail: tuple[int, ...] | None, target: str
    ) -> list[str]:
        """Fixed-width simple content read at once: CH [value] EE [next event code]."""
        w = 1 if t.kind == "bool" else t.nbits
        tw = width(tail) if tail is not None else 0
        total = w + 2 + tw
        chk = (1 << (w + 1 + tw)) | (1 << tw)
        raw = f"((t >> {1 + tw}) & {(1 << w) - 1})"
        out = [
            f"{ind}e_ = {decl.name!r}",
            f"{ind}p += {total}",
            f"{ind}t = (v >> (ln - p)) & {(1 << total) - 1}",
            f"{ind}if t & {chk}:",
            f"{ind}    raise bad_event(p, e_, -3)",
        ]
        if t.kind == "bool":
            out.append(f"{ind}{target} = {raw} == 1")
        elif t.kind == "enum":
            out.append(f"{ind}{target} = {self.enum_ref(t, 'EV')}[{raw}]")
        else:
            assert t.lo is not None and t.hi is not None
            out.append(f"{ind}{target} = {raw} + {t.lo}" if t.lo else f"{ind}{target} = {raw}")
            if (1 << w) - 1 > t.hi - t.lo:
                out.append(f"{ind}if {target} > {t.hi}:")
                out.append(f"{ind}    raise RawDecodeError(p, e_, 'value out of range')")
        if tail is not None:
            out.append(f"{ind}ev = {self.table(tail)}[t & {(1 << tw) - 1}]")
        return out

    def _dec_child(self, g: Grammar, decl: ElemDecl, ind: str) -> list[str]:
        t = type_of(self.schema, decl)
        out = [f"{ind}e_ = {decl.name!r}"]
        if isinstance(t, SimpleT):
            out += [f"{ind}p += 1"]
            if t.kind in ("string", "binary"):
                # empty content: second-level EE (escape, then 3-bit code 0), no CH event
                empty = '""' if t.kind == "string" else 'b""'
                out += [
                    f"{ind}if (v >> (ln - p)) & 1:",
                    f"{ind}    p += 3",
                    f"{ind}    if (v >> (ln - p)) & 7:",
                    f"{ind}        raise bad_event(p, e_, -3)",
                    f"{ind}    x = {empty}",
                    f"{ind}else:",
                ]
                out += self.dec_value(t, self.qkey(decl.ns, decl.name), ind + "    ")
                out += [
                    f"{ind}    p += 1",
                    f"{ind}    if (v >> (ln - p)) & 1:",
                    f"{ind}        raise bad_event(p, e_, -3)",
                ]
                return out
            out += [f"{ind}if (v >> (ln - p)) & 1:", f"{ind}    raise bad_event(p, e_, -3)"]
            out += self.dec_value(t, self.qkey(decl.ns, decl.name), ind)
            out += [
                f"{ind}p += 1",
                f"{ind}if (v >> (ln - p)) & 1:",
                f"{ind}    raise bad_event(p, e_, -3)",
            ]
            return out
        if t.unsupported or t.abstract:
            out.append(
                f"{ind}raise RawDecodeError(p, e_, 'element type not supported by this codec')"
            )
            return out
        out.append(f"{ind}x, p = {self.fn('d', g, t)}(v, ln, p, st)")
        return out

    def emit_decoder(self, g: Grammar) -> list[str]:
        ct = g.ct
        mfields = self.model_fields(ct)
        fidx = {f.alias: i for i, f in enumerate(mfields)}
        lines = [
            "",
            "",
            f"def {self.fn('d', g)}(v: int, ln: int, p: int, st: StringTable) -> tuple[{self.cls_ref(ct)}, int]:",
        ]
        ind = "        "
        body: list[str] = []
        init = [
            "    e_ = ''",
            "    x: Any",
            "    o: Any",
        ]
        for i, _f in enumerate(mfields):
            init.append(f"    f{i}: Any = None")
        body += self.read(g.start(), ind)
        for k, a in enumerate(ct.attrs):
            i = fidx[a.name]
            body.append(f"{ind}if ev == {g.at_sym[k]}:")
            body.append(f"{ind}    e_ = {a.name!r}")
            body += self.dec_value(a.st, self.qkey(a.ns, a.name), ind + "    ")
            body.append(f"{ind}    f{i} = x")
            body += self.read(g.after_attr(k), ind + "    ")
        if ct.simple_content is not None:
            i = fidx["value"]
            body.append(f"{ind}if ev == {CHT}:")
            body += self.dec_value(ct.simple_content, self.qkey(ct.ns, ct.name), ind + "    ")
            body.append(f"{ind}    f{i} = x")
            body += self.read((EE,), ind + "    ")
            if ct.simple_content.kind in ("string", "binary"):
                empty = '""' if ct.simple_content.kind == "string" else 'b""'
                body += [
                    f"{ind}elif ev == {ESC}:",
                    f"{ind}    p += 3",
                    f"{ind}    if (v >> (ln - p)) & 7:",
                    f"{ind}        raise bad_event(p, e_, -3)",
                    f"{ind}    f{i} = {empty}",
                    f"{ind}    ev = {EE}",
                ]
        for pi, alts in enumerate(g.parts):
            mx, mn = g.pmax[pi], g.pmin[pi]
            syms = g.se_sym[pi]
            if mx == 1:
                kw = "if"
                after = g.after_particle(pi, 1)
                for j, a in enumerate(alts):
                    if isinstance(a, str):
                        body.append(f"{ind}{kw} ev == {syms[j]}:")
                        body.append(
                            f"{ind}    raise RawDecodeError(p, e_, 'wildcard content not supported')"
                        )
                        kw = "elif"
                        continue
                    body.append(f"{ind}{kw} ev == {syms[j]}:")
                    kw = "elif"
                    tgt = f"f{fidx[a.name]}" if a.name in fidx and self.usable(a) else "x"
                    lines_, merged = self.dec_child(g, a, ind + "    ", after, tgt)
                    body += lines_
                    if not merged:
                        body += self.read(after, ind + "    ")
                continue
            # repeated particle
            lvars = []
            for j, a in enumerate(alts):
                if isinstance(a, ElemDecl) and a.name in fidx and self.usable(a):
                    lvars.append((j, a, fidx[a.name]))
                    body.append(f"{ind}l{pi}_{j}: list[Any] = []")
            cond = " or ".join(f"ev == {s}" for s in syms)
            body.append(f"{ind}if {cond}:")
            body.append(f"{ind}    c = 0")
            body.append(f"{ind}    while True:")
            i2 = ind + "        "
            kw = "if"
            for j, a in enumerate(alts):
                body.append(f"{i2}{kw} ev == {syms[j]}:")
                kw = "elif"
                if isinstance(a, str):
                    body.append(
                        f"{i2}    raise RawDecodeError(p, e_, 'wildcard content not supported')"
                    )
                    continue
                body += self.dec_child(g, a, i2 + "    ")[0]
                if self.usable(a):
                    body.append(f"{i2}    l{pi}_{j}.append(x)")
            body.append(f"{i2}else:")
            body.append(f"{i2}    break")
            body.append(f"{i2}c += 1")
            branches: list[tuple[str, tuple[int, ...]]] = []
            if mn > 1:
                branches.append((f"c < {mn}", g.after_particle(pi, 1)))
            mid_c = max(mn, 1)
            if mx is None:
                branches.append(("True", g.after_particle(pi, mid_c)))
            else:
                if mid_c < mx:
                    branches.append((f"c < {mx}", g.after_particle(pi, mid_c)))
                branches.append(("True", g.after_particle(pi, mx)))
            for bi, (cnd, stt) in enumerate(branches):
                if cnd == "True":
                    if bi == 0:
                        body += self.read(stt, i2)
                    else:
                        body.append(f"{i2}else:")
                        body += self.read(stt, i2 + "    ")
                    break
                body.append(f"{i2}{'if' if bi == 0 else 'elif'} {cnd}:")
                body += self.read(stt, i2 + "    ")
            for j, _a, i in lvars:
                if mfields[i].optional:
                    body.append(f"{ind}if l{pi}_{j}:")
                    body.append(f"{ind}    f{i} = l{pi}_{j}")
                else:
                    body.append(f"{ind}f{i} = l{pi}_{j}")
        body.append(f"{ind}if ev != {EE}:")
        body.append(f"{ind}    raise bad_event(p, e_, ev)")
        lines += init
        lines.append("    try:")
        lines += body
        lines += [
            "    except RawDecodeError as exc:",
            "        exc.path.append(e_)",
            "        raise",
            "    except _ERRS as exc:",
            "        fail = RawDecodeError(p, e_, type(exc).__name__)",
            "        fail.path.append(e_)",
            "        raise fail from None",
        ]
        lines.append(f"    o = _new({self.cls_ref(ct)})")
        lines += [f"    o.{f.name} = f{i}" for i, f in enumerate(mfields)]
        lines.append("    return o, p")
        return lines

    # ------------------------------------------------------------- encoding
    def enc_value(
        self, st: SimpleT, qkey: str, ind: str, framed: bool, prefix: tuple[int, int] | None = None
    ) -> list[str]:
        """Code writing ``x``; ``framed`` adds the CH (before) and EE (after) bits;
        ``prefix`` = (code, width) of a preceding event code, merged in."""
        out: list[str] = []
        pc, pw = prefix or (0, 0)
        fixed: tuple[str, int] | None = None
        if st.kind == "bool":
            fixed = ("_B[x]", 1)
        elif st.kind == "enum":
            fixed = (f"{self.enum_ref(st, 'EI')}[x]", st.nbits)
        elif st.kind == "int" and st.int_repr == "nbit":
            assert st.lo is not None and st.hi is not None
            out += [
                f"{ind}y = x - {st.lo}" if st.lo else f"{ind}y = x",
                f"{ind}if not 0 <= y <= {st.hi - st.lo}:",
                f"{ind}    raise RawEncodeError('value out of range: ' + repr(x))",
            ]
            fixed = ("y", st.nbits)
        if fixed is not None:
            expr, w = fixed
            tot = w + (2 if framed else 0)
            val = f"({expr} << 1)" if framed else expr
            head = f" | ({pc} << {tot})" if pc else ""
            out += [f"{ind}a = (a << {pw + tot}){head} | {val}", f"{ind}n += {pw + tot}"]
            return out
        if framed or pw:
            tot = pw + (1 if framed else 0)
            code = (pc << 1) if framed else pc
            out += [
                f"{ind}a = (a << {tot}) | {code}" if code else f"{ind}a <<= {tot}",
                f"{ind}n += {tot}",
            ]
        if st.kind == "int" and st.int_repr == "uint":
            lo = st.lo or 0
            out += [
                f"{ind}if {lo} <= x < 128:",
                f"{ind}    a = (a << 8) | x",
                f"{ind}    n += 8",
                f"{ind}else:",
                f"{ind}    a, n = wuint(a, n, x, {st.lo}, {st.hi})",
            ]
        elif st.kind == "int":
            out += [f"{ind}a, n = wint(a, n, x, {st.lo}, {st.hi})"]
        elif st.kind == "string":
            out += [f"{ind}a, n = wstr(a, n, x, st, {qkey!r}, {st.max_len})"]
        elif st.kind == "binary":
            out += [f"{ind}a, n = wbin(a, n, x, {st.min_len or 0}, {st.max_len})"]
        else:
            raise AssertionError(st.kind)
        if framed:
            out += [f"{ind}a <<= 1", f"{ind}n += 1"]
        return out

    def enc_child(
        self, g: Grammar, decl: ElemDecl, ind: str, prefix: tuple[int, int] | None = None
    ) -> list[str]:
        """Encode ``x``; ``prefix`` = (code, width) of the SE event, merged when possible."""
        t = type_of(self.schema, decl)
        if isinstance(t, ComplexT) and t.key == RN_KEY:
            code, w = prefix or (0, 0)
            head = f" | ({code} << e[1])" if code else ""
            return [
                f"{ind}e = _RNE.get((x.exponent, x.value))",
                f"{ind}if e is None:",
                f"{ind}    e = rn_bits(x)",
                f"{ind}a = (a << ({w} + e[1])){head} | e[0]",
                f"{ind}n += {w} + e[1]",
            ]
        if isinstance(t, SimpleT):
            if t.kind in ("string", "binary"):
                # EXIficient encodes empty content as a second-level EE (escape + 3-bit 0)
                pc, pw = prefix or (0, 0)
                return [
                    f"{ind}if x == {EMPTY[t.kind]}:",
                    f"{ind}    a = (a << {pw + 4}) | {(pc << 4) | 8}",
                    f"{ind}    n += {pw + 4}",
                    f"{ind}else:",
                    *self.enc_value(t, self.qkey(decl.ns, decl.name), ind + "    ", True, prefix),
                ]
            return self.enc_value(t, self.qkey(decl.ns, decl.name), ind, True, prefix)
        out: list[str] = []
        if prefix is not None:
            code, w = prefix
            out = [f"{ind}a = (a << {w}) | {code}" if code else f"{ind}a <<= {w}", f"{ind}n += {w}"]
        if t.unsupported or t.abstract:
            return [*out, f"{ind}raise RawEncodeError('element not supported: {decl.name}')"]
        return [*out, f"{ind}a, n = {self.fn('e', g, t)}(x, a, n, st)"]

    def emit_code(
        self, sym: int, cur: set[tuple[int, ...]], sids: dict[tuple[int, ...], int], ind: str
    ) -> list[str]:
        def index(state: tuple[int, ...]) -> int:
            return len(state) if sym == ESC else state.index(sym)

        if len(cur) == 1:
            (state,) = cur
            code, w = index(state), width(state)
            if code == 0:
                return [f"{ind}a <<= {w}", f"{ind}n += {w}"]
            return [f"{ind}a = (a << {w}) | {code}", f"{ind}n += {w}"]
        tab = {sids[s]: (index(s), width(s)) for s in cur if sym in s or sym == ESC}
        name = f"_K{self.kcount}"
        self.kcount += 1
        self.consts.append(f"{name} = {tab!r}")
        return [f"{ind}cw = {name}[s]", f"{ind}a = (a << cw[1]) | cw[0]", f"{ind}n += cw[1]"]

    def emit_encoder(self, g: Grammar) -> list[str]:
        ct = g.ct
        mfields = self.model_fields(ct)
        fidx = {f.alias: i for i, f in enumerate(mfields)}
        sids: dict[tuple[int, ...], int] = {}

        def sid(state: tuple[int, ...]) -> int:
            return sids.setdefault(state, len(sids))

        lines = [
            "",
            "",
            f"def {self.fn('e', g)}(m: {self.cls_ref(ct)}, a: int, n: int, st: StringTable) -> tuple[int, int]:",
        ]
        ind = "    "
        body: list[str] = ["    x: Any", "    y: Any", "    lst: list[tuple[int, Any]]"]
        # the class itself is checked: a look-alike (e.g. the BPT variant of a control
        # mode put in the plain one's field) must not be encoded as something else
        body += [
            f"{ind}if type(m) is not {self.cls_ref(ct)}:",
            f"{ind}    raise RawEncodeError('expected {ct.pyname}, got ' + type(m).__name__)",
        ]
        start = g.start()
        cur = {start}
        body.append(f"{ind}s = {sid(start)}")
        for k, at in enumerate(ct.attrs):
            f = mfields[fidx[at.name]]
            after = g.after_attr(k)
            body.append(f"{ind}x = m.{f.name}")
            if at.required:
                body.append(f"{ind}if x is None:")
                body.append(f"{ind}    raise RawEncodeError('missing attribute {at.name}')")
                body += self.emit_code(g.at_sym[k], cur, sids, ind)
                body += self.enc_value(at.st, self.qkey(at.ns, at.name), ind, False)
                body.append(f"{ind}s = {sid(after)}")
                cur = {after}
            else:
                body.append(f"{ind}if x is not None:")
                body += self.emit_code(g.at_sym[k], cur, sids, ind + "    ")
                body += self.enc_value(at.st, self.qkey(at.ns, at.name), ind + "    ", False)
                body.append(f"{ind}    s = {sid(after)}")
                cur = cur | {after}
        if ct.simple_content is not None:
            body.append(f"{ind}x = m.value")
            body.append(f"{ind}if x is None:")
            body.append(f"{ind}    raise RawEncodeError('missing content of {ct.name}')")
            if ct.simple_content.kind in ("string", "binary"):
                body.append(f"{ind}if x == {EMPTY[ct.simple_content.kind]}:")
                body += self.emit_code(ESC, cur, sids, ind + "    ")
                body += [f"{ind}    a <<= 3", f"{ind}    n += 3", f"{ind}    return a, n"]
            body += self.emit_code(CHT, cur, sids, ind)
            body += self.enc_value(ct.simple_content, self.qkey(ct.ns, ct.name), ind, False)
            cur = {(EE,)}
            sid((EE,))
        for pi, alts in enumerate(g.parts):
            mx, mn = g.pmax[pi], g.pmin[pi]
            syms = g.se_sym[pi]
            usable = [
                (j, a)
                for j, a in enumerate(alts)
                if isinstance(a, ElemDecl) and self.usable(a) and a.name in fidx
            ]
            if mx == 1:
                after = g.after_particle(pi, 1)
                kw = "if"
                for j, a in usable:
                    f = mfields[fidx[a.name]]
                    if len(usable) == 1:
                        body.append(f"{ind}x = m.{f.name}")
                        body.append(f"{ind}if x is not None:")
                    else:
                        body.append(f"{ind}{kw} m.{f.name} is not None:")
                        body.append(f"{ind}    x = m.{f.name}")
                        later = [mfields[fidx[b.name]].name for jj, b in usable if jj > j]
                        if later:
                            cond = " or ".join(f"m.{name} is not None" for name in later)
                            body.append(f"{ind}    if {cond}:")
                            body.append(
                                f"{ind}        raise RawEncodeError('more than one alternative of an xs:choice in {ct.name}')"
                            )
                    kw = "elif"
                    if len(cur) == 1:
                        (state,) = cur
                        body += self.enc_child(
                            g, a, ind + "    ", (state.index(syms[j]), width(state))
                        )
                    else:
                        body += self.emit_code(syms[j], cur, sids, ind + "    ")
                        body += self.enc_child(g, a, ind + "    ")
                    body.append(f"{ind}    s = {sid(after)}")
                if mn >= 1:
                    if kw == "if":
                        body.append(f"{ind}raise RawEncodeError('no usable alternative')")
                    else:
                        names = "|".join(str(a) if isinstance(a, str) else a.name for a in alts)
                        body.append(f"{ind}else:")
                        body.append(
                            f"{ind}    raise RawEncodeError('missing element in {ct.name}: {names}')"
                        )
                    cur = {after}
                else:
                    cur = cur | {after}
                continue
            # repeated particle
            mid_c = max(mn, 1)
            st_lt = g.after_particle(pi, 1) if mn > 1 else None
            st_mid = g.after_particle(pi, mid_c) if (mx is None or mid_c < mx) else None
            st_max = g.after_particle(pi, mx) if mx is not None else None
            if not usable:
                if mn >= 1:
                    body.append(f"{ind}raise RawEncodeError('wildcard content not supported')")
                    cur = {st_max or st_mid}  # type: ignore[arg-type]
                continue
            for _j, a in usable:
                name = mfields[fidx[a.name]].name
                body += [
                    f"{ind}x = m.{name}",
                    f"{ind}if x is not None and (type(x) is not list or not x):",
                    f"{ind}    raise RawEncodeError('{name}: expected a non-empty list or None')",
                ]
            if len(usable) == 1:
                j, a = usable[0]
                body.append(f"{ind}lst = [({j}, y) for y in (x or ())]")
            else:
                parts = " + ".join(
                    f"[({j}, y) for y in (m.{mfields[fidx[a.name]].name} or ())]" for j, a in usable
                )
                body.append(f"{ind}lst = {parts}")
            body.append(f"{ind}if lst:")
            cond = f"len(lst) < {mn}" + (f" or len(lst) > {mx}" if mx is not None else "")
            body.append(f"{ind}    if {cond}:")
            body.append(f"{ind}        raise RawEncodeError('bad number of {ct.name} items')")
            body.append(f"{ind}    for c, (j, x) in enumerate(lst):")
            i3 = ind + "            "
            kw = "if"
            for j, a in usable:
                body.append(f"{ind}        {kw} j == {j}:")
                kw = "elif"
                body.append(f"{i3}if c == 0:")
                body += self.emit_code(syms[j], cur, sids, i3 + "    ")
                if st_lt is not None:
                    body.append(f"{i3}elif c < {mn}:")
                    body += self.emit_code(syms[j], {st_lt}, sids, i3 + "    ")
                if st_mid is not None:
                    body.append(f"{i3}else:")
                    body += self.emit_code(syms[j], {st_mid}, sids, i3 + "    ")
                body += self.enc_child(g, a, i3)
            after_states: set[tuple[int, ...]] = set()
            if st_max is not None and st_mid is not None:
                body.append(f"{ind}    s = {sid(st_max)} if len(lst) == {mx} else {sid(st_mid)}")
                after_states = {st_max, st_mid}
            elif st_max is not None:
                body.append(f"{ind}    s = {sid(st_max)}")
                after_states = {st_max}
            else:
                assert st_mid is not None
                body.append(f"{ind}    s = {sid(st_mid)}")
                after_states = {st_mid}
            if mn >= 1:
                body.append(f"{ind}else:")
                body.append(f"{ind}    raise RawEncodeError('missing list in {ct.name}')")
                cur = after_states
            else:
                cur = cur | after_states
        body += self.emit_code(EE, cur, sids, ind)
        body.append(f"{ind}return a, n")
        lines += body
        return lines

    # ---------------------------------------------------------------- roots
    def emit_roots(self) -> list[str]:
        out = [
            "",
            "",
            "# payload type -> (event-code width, ((element name, decoder or None), ...))",
        ]
        out.append("ROOT_DECODERS: dict[int, tuple[int, tuple[tuple[str, Any], ...]]] = {")
        enc: list[str] = []
        for uni in self.unis:
            entries = []
            w = len(uni.globals_sorted).bit_length()  # n globals + SE(*), no 2nd level
            for code, gk in enumerate(uni.globals_sorted):
                decl = self.schema.elements[gk]
                t = type_of(self.schema, decl)
                fn = "None"
                if isinstance(t, ComplexT) and not (t.unsupported or t.abstract):
                    g = self.grammars[(uni.uid, t.key)]
                    fn = self.fn("d", g)
                    enc.append(
                        f"    ({self.cls_ref(t)}, {uni.uid:#x}): ({decl.name!r}, {code}, "
                        f"{w}, {self.fn('e', g)}),"
                    )
                entries.append(f"({decl.name!r}, {fn})")
            out.append(f"    {uni.uid:#x}: ({w}, ({', '.join(entries)},)),")
        out.append("}")
        out.append("")
        out.append("# (model class, payload type) -> (element name, event code, width, encoder)")
        out.append("ROOT_ENCODERS: dict[tuple[type[Any], int], tuple[str, int, int, Any]] = {")
        out += enc
        out.append("}")
        return out


# sha256 of every schema file the generator reads (iso15118==0.31.2's copies of the
# official ISO 15118-20 / W3C XSDs); update only together with the generated files.
XSD_SHA256 = {
    "V2G_CI_AppProtocol.xsd": "b6d0a1be3067a6ec9f0507ff5eb8629bad6579ae2a8e0537db0abfe37741b512",
    "xmldsig-core-schema.xsd": "35cf8197da812c85e40d57891b35c94187569ed474a2dac813ce5090dafcd35c",
    "iso15118_20/V2G_CI_CommonTypes.xsd": "3a1e442fcf4dba9c9c2a3125ba133b853bad02931a989b4eec7f8bdd66d904fe",
    "iso15118_20/V2G_CI_CommonMessages.xsd": "5cd9390e1fbc7eb4ef289cd21cc973012b8ce2c07927216380a58bc16326348b",
    "iso15118_20/V2G_CI_DC.xsd": "050b1393bd70c5b0f0408801c4963741e9553c34b6435070017f76dfcc708a63",
    "iso15118_20/V2G_CI_AC.xsd": "3a67df5893f446060ef112c09818c7bf59dc1d3f9ec3b7a194e7616e59c0eaba",
}


def check_pinned(base: Path) -> list[str]:
    """Schema files that are missing or differ from the pinned content."""
    problems = []
    for name, want in XSD_SHA256.items():
        path = base / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if got != want:
            problems.append(f"{name}: sha256 {got}, pinned {want}")
    return problems


def main(argv: list[str]) -> int:
    args = [a for a in argv[1:] if a != "--check"]
    check = "--check" in argv[1:]
    if len(args) != 1:
        print(__doc__)
        return 2
    base = Path(args[0])
    problems = check_pinned(base)
    if problems:
        print("refusing: the schemas are not the pinned ones:", *problems, sep="\n  ")
        return 3
    schema = Schema()
    files = {
        SAP: base / "V2G_CI_AppProtocol.xsd",
        CM: base / "iso15118_20" / "V2G_CI_CommonMessages.xsd",
        DC: base / "iso15118_20" / "V2G_CI_DC.xsd",
        AC: base / "iso15118_20" / "V2G_CI_AC.xsd",
    }
    for f in files.values():
        schema.load(f)

    def closure(ns: str) -> list[str]:
        out = [ns]
        for o in sorted(schema.imports.get(ns, ())):
            for x in closure(o):
                if x not in out:
                    out.append(x)
        return out

    unis = []
    for uid, ns in ((0x8001, SAP), (0x8002, CM), (0x8003, AC), (0x8004, DC)):
        u = Universe(uid, ns, ns, closure(ns))
        gl = [k for n in u.namespaces for k in schema.file_globals[n]]
        # document grammar: global elements sorted by local name, then namespace
        u.globals_sorted = sorted(gl, key=lambda k: (k[1], k[0]))
        unis.append(u)
    gen = Gen(schema, unis)
    repo = Path(__file__).resolve().parent.parent
    outputs = {
        repo / "chargepoint/iso15118/messages" / f"{mod}.py": gen.emit_models(mod)
        for mod in ("app_protocol", "xmldsig", "iso20")
    }
    outputs[repo / "chargepoint/iso15118/exi/_codec.py"] = gen.emit_codec()
    if check:
        stale = [
            str(p.relative_to(repo))
            for p, t in outputs.items()
            if not p.exists() or p.read_text() != t
        ]
        print("stale:", ", ".join(stale) if stale else "none")
        return 1 if stale else 0
    for path, text in outputs.items():
        path.write_text(text)
    print("generated", len(gen.types), "models,", len(gen.grammars), "grammars")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
