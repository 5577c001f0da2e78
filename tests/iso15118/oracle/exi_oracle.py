"""EXI oracle: EXIficient (Java, shipped in the ``iso15118`` package) driven via py4j.

Runs ONLY under the oracle venv (``iso15118==0.31.2``, pydantic 1); the tests start
it as a subprocess and talk JSON over stdin/stdout. It never imports the iso15118
network stack: it only locates the package's jar and XSD files.

Grammars are built by EXIficient's ``GrammarFactory`` from the official -20 XSDs
that ship with the package (copied into a temporary directory so that the
``xmldsig`` import resolves), with valuePartitionCapacity = valueMaxLength = 0.
(The package's own ``EXICodec`` entry point uses pre-compiled grammars that leave six
long lists unbounded (docs/interop-iso15118.md), so it is only used by the benchmark.)

Request (stdin): ``{"requests": [{"pt": 32772, "exi": "80..."}, ...]}``
Response (stdout): ``{"results": [{"xml_tree": {...}, "reencoded": "80..."} |
{"error": "..."}]}``; ``xml_tree`` maps the root element name to its content with
namespaces stripped, attributes and child elements as keys, repeated children as
lists and leaf text as strings.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

SCHEMAS = {
    0x8001: "V2G_CI_AppProtocol.xsd",
    0x8002: "V2G_CI_CommonMessages.xsd",
    0x8003: "V2G_CI_AC.xsd",
    0x8004: "V2G_CI_DC.xsd",
}


def package_dir() -> Path:
    spec = importlib.util.find_spec("iso15118")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def xml_to_tree(elem: ET.Element) -> Any:
    children = list(elem)
    if not children and not elem.attrib:
        return elem.text if elem.text is not None else {}
    out: dict[str, Any] = {}
    for k, v in elem.attrib.items():
        out[k.split("}")[-1]] = v
    if not children and elem.text is not None:
        out["value"] = elem.text
    grouped: dict[str, list[Any]] = {}
    for c in children:
        grouped.setdefault(c.tag.split("}")[-1], []).append(xml_to_tree(c))
    for name, vals in grouped.items():
        out[name] = vals[0] if len(vals) == 1 else vals
    return out


def main() -> int:
    req = json.load(sys.stdin)
    from py4j.java_gateway import JavaGateway  # noqa: PLC0415 - oracle venv only

    pkg = package_dir()
    jar = pkg / "shared" / "EXICodec.jar"
    tmp = Path(tempfile.mkdtemp(prefix="exi-oracle-"))
    try:
        src = pkg / "shared" / "schemas"
        for f in [
            *src.glob("iso15118_20/*.xsd"),
            src / "xmldsig-core-schema.xsd",
            src / "V2G_CI_AppProtocol.xsd",
        ]:
            text = f.read_text(encoding="utf-8")
            # the xmldsig schema carries a DOCTYPE with an external DTD (no network here)
            text = re.sub(r"<!DOCTYPE.*?\]>", "", text, flags=re.S)
            (tmp / f.name).write_text(text, encoding="utf-8")
        gw = JavaGateway.launch_gateway(
            classpath=str(jar),
            die_on_exit=True,
            javaopts=["--add-opens", "java.base/java.lang=ALL-UNNAMED"],
        )
        jvm = gw.jvm
        factories: dict[int, Any] = {}

        def factory(pt: int) -> Any:
            if pt not in factories:
                f = jvm.com.siemens.ct.exi.core.helpers.DefaultEXIFactory.newInstance()
                grammars = jvm.com.siemens.ct.exi.grammars.GrammarFactory.newInstance()
                f.setGrammars(grammars.createGrammars(str(tmp / SCHEMAS[pt])))
                f.setValuePartitionCapacity(0)
                f.setValueMaxLength(0)
                factories[pt] = f
            return factories[pt]

        tf = jvm.javax.xml.transform.TransformerFactory.newInstance()
        spf = jvm.javax.xml.parsers.SAXParserFactory.newInstance()
        spf.setNamespaceAware(True)

        def decode(pt: int, data: bytes) -> str:
            src = jvm.com.siemens.ct.exi.main.api.sax.EXISource(factory(pt))
            sax = jvm.javax.xml.transform.sax.SAXSource(
                src.getXMLReader(),
                jvm.org.xml.sax.InputSource(jvm.java.io.ByteArrayInputStream(data)),
            )
            sw = jvm.java.io.StringWriter()
            t = tf.newTransformer()
            t.setOutputProperty("omit-xml-declaration", "yes")
            t.transform(sax, jvm.javax.xml.transform.stream.StreamResult(sw))
            return str(sw.toString())

        def encode(pt: int, xml: str) -> bytes:
            res = jvm.com.siemens.ct.exi.main.api.sax.EXIResult(factory(pt))
            bos = jvm.java.io.ByteArrayOutputStream()
            res.setOutputStream(bos)
            reader = spf.newSAXParser().getXMLReader()
            reader.setContentHandler(res.getHandler())
            reader.parse(jvm.org.xml.sax.InputSource(jvm.java.io.StringReader(xml)))
            return bytes(bos.toByteArray())

        results = []
        for r in req["requests"]:
            pt = int(r["pt"])
            try:
                xml = decode(pt, bytes.fromhex(r["exi"])) if "exi" in r else r["xml"]
                root = ET.fromstring(xml)
                out = {
                    "xml_tree": {root.tag.split("}")[-1]: xml_to_tree(root)},
                    "reencoded": encode(pt, xml).hex(),
                    "xml": xml,
                }
            except Exception as exc:  # noqa: BLE001 - report every failure to the test
                out = {"error": f"{type(exc).__name__}: {exc}"}
            results.append(out)
        json.dump({"results": results}, sys.stdout)
        gw.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
