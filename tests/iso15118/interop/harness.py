"""Start the independent ISO 15118-20 EVCC / SECC of ``iso15118==0.31.2`` from our tests.

Runs in OUR venv and never imports the package: ``run_evcc.py`` / ``run_secc.py``
run as subprocesses under the oracle venv (``.oracle-venv/bin/python``, override
with ``ISO15118_ORACLE_PYTHON``), on loopback only. docs/interop-iso15118.md
describes what those scripts take from the package and what they patch.

API::

    reason = skip_reason()                    # None when the oracle venv + java work
    result = await run_evcc("::1", port, service="dc_bpt", control_mode="dynamic")
    result.ok, result.messages, result.response_codes, result.stderr_tail
    async with iso15118_secc(host="::1", service="dc_bpt") as port: ...
    async with iso15118_secc_process() as secc:      # secc.port, secc.sessions,
        report = await secc.next_session_end(10.0)   # service time per response

Every subprocess gets its stderr in a temporary file (no pipe can fill up) and is
ended by its own pid: SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
RUN_EVCC = HERE / "run_evcc.py"
RUN_SECC = HERE / "run_secc.py"
# Same convention as tests/iso15118/exi_support.py (ORACLE_PYTHON)
ORACLE_PYTHON = Path(
    os.environ.get("ISO15118_ORACLE_PYTHON", str(REPO / ".oracle-venv" / "bin" / "python"))
)

SERVICES = ("ac", "ac_bpt", "dc", "dc_bpt")
CONTROL_MODES = ("scheduled", "dynamic")
#: JVM start-up and grammar building come on top of the session timeout
STARTUP_MARGIN_S = 60.0
STOP_TIMEOUT_S = 10.0
STDERR_TAIL_CHARS = 6000


def oracle_python() -> Path | None:
    """The oracle venv's interpreter, or None when it does not exist."""
    return ORACLE_PYTHON if ORACLE_PYTHON.exists() else None


@functools.cache
def skip_reason() -> str | None:
    """None when the harness can run, else why tests using it must skip."""
    python = oracle_python()
    if python is None:
        return f"oracle python {ORACLE_PYTHON} not found (set ISO15118_ORACLE_PYTHON)"
    if shutil.which("java") is None:
        return "java not found (the iso15118 package's EXI codec runs on a JVM)"
    probe = subprocess.run(
        [str(python), "-c", "import iso15118, py4j"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=_child_env(),
    )
    if probe.returncode != 0:
        return f"iso15118 / py4j not importable by {python}: {probe.stderr.strip()[-300:]}"
    return None


@dataclass(frozen=True)
class EvccResult:
    """Outcome of one session of their EVCC (see run_evcc.py for the fields)."""

    ok: bool
    returncode: int | None
    messages: tuple[str, ...]
    response_codes: dict[str, dict[str, int]]
    responses: tuple[tuple[str, str | None], ...]
    charge_loops: int
    loop_control_mode: str | None
    rtt: dict[str, dict[str, float]]
    error: str | None
    stderr_tail: str
    report: dict[str, Any] = field(repr=False)

    def explain(self) -> str:
        """Failure text for assertions: error plus the end of their log."""
        return f"error={self.error!r} rc={self.returncode}\n--- stderr tail ---\n{self.stderr_tail}"


def evcc_command(
    host: str,
    port: int,
    *,
    service: str,
    control_mode: str,
    tls: bool = False,
    loops: int = 10,
    timeout_s: float = 60.0,
    sdp_port: int | None = None,
    codec: str = "official",
    loop_delay_s: int = 0,
    linger: bool = False,
    seed: int = 1,
    tls_ca: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    log_level: str = "INFO",
) -> list[str]:
    """argv for ``run_evcc.py`` (raises ValueError on arguments it would reject)."""
    if service not in SERVICES or control_mode not in CONTROL_MODES:
        raise ValueError(f"service {service!r} / control mode {control_mode!r} not supported")
    python = oracle_python()
    if python is None:
        raise FileNotFoundError(f"oracle python {ORACLE_PYTHON} not found")
    cmd = [
        str(python),
        str(RUN_EVCC),
        *("--host", host, "--port", str(port)),
        *("--service", service, "--control-mode", control_mode),
        *("--tls", "on" if tls else "off"),
        *("--loops", str(loops), "--loop-delay", str(loop_delay_s)),
        *("--timeout", str(timeout_s), "--codec", codec, "--seed", str(seed)),
        *("--log-level", log_level),
    ]
    if sdp_port is not None:
        cmd += ["--sdp-port", str(sdp_port)]
    if linger:
        cmd.append("--linger")
    for flag, path in (("--tls-ca", tls_ca), ("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path is not None:
            cmd += [flag, str(path)]
    return cmd


def _child_env() -> dict[str, str]:
    # the oracle venv must not see our interpreter's paths
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _tail(stream: IO[bytes]) -> str:
    stream.seek(0)
    return stream.read().decode("utf-8", "replace")[-STDERR_TAIL_CHARS:]


def _evcc_result(returncode: int | None, stdout: bytes, stderr_tail: str) -> EvccResult:
    lines = [ln for ln in stdout.decode("utf-8", "replace").splitlines() if ln.strip()]
    report: dict[str, Any] = {}
    error: str | None = None
    if lines:
        try:
            report = json.loads(lines[-1])
        except json.JSONDecodeError:
            error = f"unparsable output line: {lines[-1][:200]!r}"
    else:
        error = "no JSON line on stdout (crashed or killed)"
    return EvccResult(
        ok=bool(report.get("ok")) and returncode == 0,
        returncode=returncode,
        messages=tuple(report.get("messages", ())),
        response_codes=dict(report.get("response_codes", {})),
        responses=tuple((r[0], r[1]) for r in report.get("responses", ())),
        charge_loops=int(report.get("charge_loops", 0)),
        loop_control_mode=report.get("loop_control_mode"),
        rtt=dict(report.get("rtt", {})),
        error=error if error is not None else report.get("error"),
        stderr_tail=stderr_tail,
        report=report,
    )


async def run_evcc(
    host: str,
    port: int,
    *,
    service: str,
    control_mode: str,
    tls: bool = False,
    loops: int = 10,
    timeout_s: float = 60.0,
    **options: Any,
) -> EvccResult:
    """Run one complete session of their EVCC against a SECC at ``[host]:port``.

    ``options``: ``sdp_port``, ``codec`` ("official" | "package"), ``loop_delay_s``,
    ``linger``, ``seed``, ``tls_ca``, ``tls_cert``, ``tls_key``, ``log_level``
    (see :func:`evcc_command`).
    """
    cmd = evcc_command(
        host,
        port,
        service=service,
        control_mode=control_mode,
        tls=tls,
        loops=loops,
        timeout_s=timeout_s,
        **options,
    )
    with tempfile.TemporaryFile() as err:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            cwd=HERE,
            env=_child_env(),
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout_s + STARTUP_MARGIN_S)
        except TimeoutError:
            out = b""
        finally:
            await _stop(proc)
        return _evcc_result(proc.returncode, out, _tail(err))


def run_evcc_blocking(
    host: str,
    port: int,
    *,
    service: str,
    control_mode: str,
    tls: bool = False,
    loops: int = 10,
    timeout_s: float = 60.0,
    **options: Any,
) -> EvccResult:
    """:func:`run_evcc` for synchronous callers (blocks the calling thread)."""
    cmd = evcc_command(
        host,
        port,
        service=service,
        control_mode=control_mode,
        tls=tls,
        loops=loops,
        timeout_s=timeout_s,
        **options,
    )
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=HERE,
                env=_child_env(),
                timeout=timeout_s + STARTUP_MARGIN_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it
            return _evcc_result(None, exc.stdout or b"", _tail(err))
        return _evcc_result(proc.returncode, proc.stdout, _tail(err))


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """End our child by its pid: SIGTERM, then SIGKILL; always reaped."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
    await proc.wait()


@dataclass
class SeccProcess:
    """A running SECC of the package; ``sessions`` collects its session reports."""

    port: int
    process: asyncio.subprocess.Process
    stderr_file: IO[bytes]
    sessions: list[dict[str, Any]] = field(default_factory=list)
    _reports: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    async def next_session_end(self, timeout_s: float = 15.0) -> dict[str, Any]:
        """The next ``session_end`` report (ok, reason, responses, service_time, ...)."""
        return await asyncio.wait_for(self._reports.get(), timeout_s)

    def stderr_tail(self) -> str:
        return _tail(self.stderr_file)


async def _read_reports(stdout: asyncio.StreamReader, secc: SeccProcess) -> None:
    while line := await stdout.readline():
        report = json.loads(line)
        if "session_end" in report:
            secc.sessions.append(report["session_end"])
            secc._reports.put_nowait(report["session_end"])


def secc_command(
    host: str = "::1",
    *,
    port: int = 0,
    service: str | Sequence[str] | None = None,
    control_mode: str | Sequence[str] | None = None,
    tls: bool = False,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    tls_client_ca: Path | None = None,
    codec: str = "official",
    linger: bool = False,
    log_level: str = "INFO",
) -> list[str]:
    """argv for ``run_secc.py``; ``service`` / ``control_mode`` narrow what it offers."""
    services = [service] if isinstance(service, str) else list(service or ())
    modes = [control_mode] if isinstance(control_mode, str) else list(control_mode or ())
    for s in services:
        if s not in SERVICES:
            raise ValueError(f"service {s!r} not supported")
    for m in modes:
        if m not in CONTROL_MODES:
            raise ValueError(f"control mode {m!r} not supported")
    python = oracle_python()
    if python is None:
        raise FileNotFoundError(f"oracle python {ORACLE_PYTHON} not found")
    cmd = [
        str(python),
        str(RUN_SECC),
        *("--host", host, "--port", str(port), "--tls", "on" if tls else "off"),
        *("--codec", codec, "--log-level", log_level),
    ]
    for s in services:
        cmd += ["--service", s]
    for m in modes:
        cmd += ["--control-mode", m]
    if linger:
        cmd.append("--linger")
    for flag, path in (
        ("--tls-cert", tls_cert),
        ("--tls-key", tls_key),
        ("--tls-client-ca", tls_client_ca),
    ):
        if path is not None:
            cmd += [flag, str(path)]
    return cmd


@asynccontextmanager
async def iso15118_secc_process(
    host: str = "::1", *, startup_timeout_s: float = STARTUP_MARGIN_S, **options: Any
) -> AsyncIterator[SeccProcess]:
    """Their SECC listening on ``[host]:port`` (``port=0``: a free one) for the block.

    ``options``: see :func:`secc_command`. Serves any number of sessions, one after
    the other or at once; stopped (SIGTERM, then SIGKILL) when the block ends.
    """
    cmd = secc_command(host, **options)
    with tempfile.TemporaryFile() as err:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            cwd=HERE,
            env=_child_env(),
        )
        try:
            assert proc.stdout is not None
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), startup_timeout_s)
            except TimeoutError:
                line = b""
            if not line:
                raise RuntimeError(f"their SECC did not start:\n{_tail(err)}")
            secc = SeccProcess(int(json.loads(line)["listening"]), proc, err)
            reader = asyncio.create_task(_read_reports(proc.stdout, secc))
            try:
                yield secc
            finally:
                await _stop(proc)
                await reader  # ends at EOF of the child's stdout
        finally:
            await _stop(proc)


@asynccontextmanager
async def iso15118_secc(host: str = "::1", **options: Any) -> AsyncIterator[int]:
    """:func:`iso15118_secc_process` yielding just the TCP port."""
    async with iso15118_secc_process(host, **options) as secc:
        yield secc.port
