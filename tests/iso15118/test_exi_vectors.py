"""Every message of the shared captures / unit vectors decodes and re-encodes identically."""

from __future__ import annotations

from typing import Any

import pytest

from chargepoint.iso15118 import exi
from tests.iso15118.exi_support import SHARED, json_equal, load_vectors

pytestmark = pytest.mark.skipif(
    not (SHARED / "unit-vectors.json").exists(), reason="shared reference vectors absent"
)

VECTORS = load_vectors() if (SHARED / "unit-vectors.json").exists() else []


@pytest.mark.parametrize(("label", "msg"), VECTORS, ids=[v[0] for v in VECTORS])
def test_vector_decode_and_reencode(label: str, msg: dict[str, Any]) -> None:
    pt = int(msg["payload_type"], 16)
    data = bytes.fromhex(msg["exi"])
    model = exi.decode(data, pt)
    got = exi.to_json(model)
    assert json_equal(got, msg["decoded"]), (got, msg["decoded"])
    assert exi.encode(model, pt) == data
    # JSON round trip reproduces the same model and bytes
    again = exi.from_json(got, pt)
    assert again == model
    assert exi.encode(again) == data
    # the recorded content (vector conventions) validates to the same model
    assert exi.from_json(msg["decoded"], pt) == model


def test_vector_count() -> None:
    assert len(VECTORS) == 112 + 46 + 110 + 85
