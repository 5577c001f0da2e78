#!/usr/bin/env python3
"""Mutation fuzzer for the V2GTP framer plus the EXI decoder.

    python tools/fuzz_exi.py [--count 1000000] [--seed 1] [--workers 2]

Seeds are the shared reference vectors (``../shared/iso15118-20`` when present)
plus built-in messages; each input is a seed mutated by bit flips, byte
replacement, truncation, insertion, duplication of a slice - or pure random
bytes. Each input is wrapped in a V2GTP frame (sometimes with a damaged header
or a second frame behind it), fed to the incremental framer in random splits
(whole, byte by byte, random cuts), and every framed payload goes through
``exi.decode``. The only acceptable outcomes are typed framing events/errors and
``ExiDecodeError``; whatever decodes must re-encode and decode to the same
model. Exits 1 (printing the reproducer) on the first violation.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chargepoint.errors import LocalProtocolError, RemoteProtocolError  # noqa: E402
from chargepoint.iso15118 import exi  # noqa: E402
from chargepoint.iso15118.exi import ExiDecodeError  # noqa: E402
from chargepoint.iso15118.messages import iso20 as m  # noqa: E402
from chargepoint.iso15118.v2gtp import (  # noqa: E402
    ConnectionClosed,
    V2gtpError,
    V2gtpFramer,
    V2gtpMessage,
    encode_frame,
)

PTS = (0x8001, 0x8002, 0x8003, 0x8004)


def builtin_seeds() -> list[tuple[int, bytes]]:
    def rn(v: int, e: int = 0) -> m.RationalNumber:
        return m.RationalNumber(exponent=e, value=v)

    hdr = m.MessageHeader(session_id=b"\x01" * 8, time_stamp=123456789)
    msgs = [
        m.DC_ChargeLoopReq(
            header=hdr,
            meter_info_requested=False,
            ev_present_voltage=rn(400),
            bpt_dynamic_dc_cl_req_control_mode=m.BPT_Dynamic_DC_CLReqControlMode(
                ev_target_energy_request=rn(1),
                ev_maximum_energy_request=rn(2),
                ev_minimum_energy_request=rn(-3),
                ev_maximum_charge_power=rn(4),
                ev_minimum_charge_power=rn(5),
                ev_maximum_charge_current=rn(6),
                ev_maximum_voltage=rn(7),
                ev_minimum_voltage=rn(8),
                ev_maximum_discharge_power=rn(-9),
                ev_minimum_discharge_power=rn(-10),
                ev_maximum_discharge_current=rn(-11),
            ),
        ),
        m.ServiceDetailRes(
            header=hdr,
            response_code="OK",
            service_id=2,
            service_parameter_list=m.ServiceParameterList(
                parameter_set=[
                    m.ParameterSet(
                        parameter_set_id=1,
                        parameter=[
                            m.Parameter(name="Connector", int_value=2),
                            m.Parameter(name="x", finite_string="abc"),
                        ],
                    )
                ]
            ),
        ),
        m.SessionSetupReq(header=hdr, evccid="WMIV1234567890ABCDEX"),
    ]
    return [(exi.payload_type_of(x), exi.encode(x)) for x in msgs]


def load_seeds() -> list[tuple[int, bytes]]:
    seeds = builtin_seeds()
    shared = REPO / ".." / "shared" / "iso15118-20"
    for name in (
        "capture-dc-dynamic.json",
        "capture-ac-bpt-scheduled.json",
        "capture-dc-mtls.json",
        "unit-vectors.json",
    ):
        path = shared / name
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        items = data["messages"] if isinstance(data, dict) else data
        for it in items:
            seeds.append((int(it["payload_type"], 16), bytes.fromhex(it["exi"])))
    return seeds


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and b:
            i = rng.randrange(len(b) * 8)
            b[i // 8] ^= 0x80 >> (i % 8)
        elif op == 1 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2 and b:
            del b[rng.randrange(len(b)) :]
        elif op == 3:
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 4 and b:
            i = rng.randrange(len(b))
            j = rng.randrange(i, min(len(b), i + 32) + 1)
            b[i:i] = b[i:j]
        elif op == 5 and b:
            i = rng.randrange(len(b))
            b[i] = rng.choice((0x00, 0xFF, 0x7F, 0x80))
    return bytes(b)


def frame_stream(rng: random.Random, pt: int, data: bytes) -> bytes:
    """Wrap ``data`` in a V2GTP frame, sometimes with a damaged header or a neighbour."""
    frame = bytearray(encode_frame(pt, data))
    if rng.random() < 0.05:
        frame[rng.randrange(8)] = rng.randrange(256)  # version, type or length damaged
    if rng.random() < 0.05:
        frame += encode_frame(pt, data)  # two messages in one read
    return bytes(frame)


def chunks(rng: random.Random, data: bytes) -> list[bytes]:
    """Split like a TCP stream might: whole, byte by byte, or at random places."""
    mode = rng.randrange(3)
    if mode == 0:
        return [data]
    if mode == 1:
        return [data[i : i + 1] for i in range(len(data))]
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randint(1, 4)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def check_decode(pt: int, data: bytes) -> tuple[bool, str | None]:
    """True when decoded (and round-tripped), False on the typed error; a violation else."""
    try:
        model = exi.decode(data, pt)
    except ExiDecodeError:
        return False, None
    except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
        return False, f"{type(exc).__name__}: {exc} pt={pt:#x} data={data.hex()}"
    try:
        if exi.decode(exi.encode(model, pt), pt) != model:
            return False, f"round trip differs pt={pt:#x} data={data.hex()}"
    except Exception as exc:  # noqa: BLE001
        return False, f"re-encode {type(exc).__name__}: {exc} data={data.hex()}"
    return True, None


def run(args: tuple[int, int, list[tuple[int, bytes]]]) -> tuple[int, int, int, str | None]:
    """Feed ``count`` inputs through the V2GTP framer and the EXI decoder."""
    count, seed, seeds = args
    rng = random.Random(seed)
    ok = errors = 0
    for _ in range(count):
        if rng.random() < 0.05:
            pt, data = rng.choice(PTS), b"\x80" + rng.randbytes(rng.randint(0, 64))
        else:
            pt, data = rng.choice(seeds)
            data = mutate(rng, data)
            if rng.random() < 0.1:
                pt = rng.choice(PTS)
        framer = V2gtpFramer()
        try:
            for piece in chunks(rng, frame_stream(rng, pt, data)):
                framer.receive_data(piece)
            events = list(framer.events())
        except (RemoteProtocolError, LocalProtocolError):
            errors += 1  # typed framing errors are fine
            continue
        except Exception as exc:  # noqa: BLE001
            return ok, errors, 1, f"framer {type(exc).__name__}: {exc} data={data.hex()}"
        decoded_any = False
        for event in events:
            if isinstance(event, V2gtpMessage):
                decoded, violation = check_decode(event.payload_type, event.payload)
                if violation is not None:
                    return ok, errors, 1, violation
                decoded_any = decoded_any or decoded
            elif not isinstance(event, V2gtpError | ConnectionClosed):
                return ok, errors, 1, f"unexpected framer event {event!r}"
        if decoded_any:
            ok += 1
        else:
            errors += 1
    return ok, errors, 0, None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=multiprocessing.cpu_count())
    ns = ap.parse_args()
    seeds = load_seeds()
    t0 = time.monotonic()
    per = -(-ns.count // ns.workers)
    jobs = [(per, ns.seed * 1000 + w, seeds) for w in range(ns.workers)]
    with multiprocessing.Pool(ns.workers) as pool:
        results = pool.map(run, jobs)
    ok = sum(r[0] for r in results)
    errs = sum(r[1] for r in results)
    bad = [r[3] for r in results if r[3]]
    total = ok + errs + len(bad)
    dt = time.monotonic() - t0
    print(
        f"{total} inputs in {dt:.1f} s: {ok} decoded (round trip ok), "
        f"{errs} typed errors (V2GTP or EXI), "
        f"{len(bad)} violations; {len(seeds)} seeds"
    )
    for b in bad:
        print("VIOLATION:", b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
