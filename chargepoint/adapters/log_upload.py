"""The station's log files and their upload to the CSMS's server (OCPP N01 GetLog).

Two logs live in ``runtime.state_dir`` (mode 0600, each bounded: one file of at
most ``max_bytes`` plus ``BACKUPS`` rotated copies):

* ``diagnostics.log``: the service's own log at the configured level, through the
  same secret-redaction filter as the console (:mod:`.log_redaction`);
* ``security.log``: one line per security event reported to the CSMS (A04), which
  the CSMS asks for as SecurityLog.

An upload (:class:`LogUploader`) collects the requested log, keeping the lines
between the request's oldest and latest timestamps (a line without a timestamp,
e.g. a traceback, goes with the line before it), zips it and sends it with HTTP
PUT, or POST multipart/form-data when the server refuses PUT (405).  A location
ending in ``/`` gets the file name appended.  FTP is not supported: such a
request ends in UploadFailure with a log line saying so.  Failures are retried
as the GetLog asked; each attempt reports Uploading, the end Uploaded or the
last failure.  The blocking ``urllib`` work runs in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import io
import logging
import logging.handlers
import os
import ssl
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit, urlunsplit
from urllib.request import Request, urlopen

from chargepoint.adapters.log_redaction import RedactSecrets
from chargepoint.ocpp.station_io import LogUploadProgress, RecordSecurityEvent, UploadLog

logger = logging.getLogger(__name__)

DIAGNOSTICS_LOG = "diagnostics.log"
SECURITY_LOG = "security.log"
BACKUPS = 1  # rotated copies kept of each log
UPLOAD_TIMEOUT_S = 30.0  # per attempt
LOG_TYPE_FILES = {"DiagnosticsLog": DIAGNOSTICS_LOG, "SecurityLog": SECURITY_LOG}


def _utc_formatter() -> logging.Formatter:
    """``2026-01-01T00:00:00.123Z LEVEL logger: message``, the console's text format."""
    formatter = logging.Formatter("%(asctime)sZ %(levelname)s %(name)s: %(message)s")
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03d"
    formatter.converter = time.gmtime
    return formatter


class LogFiles:
    """The diagnostics and security logs of one station, in ``directory``."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes

    @contextlib.contextmanager
    def diagnostics_log(self, level: str) -> Iterator[logging.Handler | None]:
        """Write the service's log records at ``level`` and above to diagnostics.log
        while the context lasts (the root logger's level still applies first).

        A log file must never stop charging: a directory that cannot take it gives
        one warning and no file (None); a full disk later drops lines quietly."""
        path = self.directory / DIAGNOSTICS_LOG
        try:
            _private(path)
            handler = _DiagnosticsHandler(
                path, maxBytes=self.max_bytes, backupCount=BACKUPS, encoding="utf-8"
            )
        except OSError as exc:
            logger.warning("no diagnostics log file %s: %s", path, exc.strerror or exc)
            yield None
            return
        handler.setLevel(level)
        handler.setFormatter(_utc_formatter())
        handler.addFilter(RedactSecrets())  # no credential in the file either
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            yield handler
        finally:
            root.removeHandler(handler)
            handler.close()

    def record_security_event(self, event: RecordSecurityEvent) -> None:
        """Append one line to security.log (rotated beyond ``max_bytes``)."""
        path = self.directory / SECURITY_LOG
        detail = " ".join(event.tech_info.split())  # one line per event
        line = f"{event.timestamp} {event.kind}{' ' + detail if detail else ''}\n".encode()
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size + len(line) > self.max_bytes:
                path.replace(path.with_name(f"{SECURITY_LOG}.1"))
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def collect(self, log_type: str, oldest: float | None, latest: float | None) -> bytes:
        """A zip of the ``log_type`` log, its lines within [oldest, latest] (UTC s)."""
        name = LOG_TYPE_FILES[log_type]
        lines: list[str] = []
        for path in (self.directory / f"{name}.{BACKUPS}", self.directory / name):
            with contextlib.suppress(FileNotFoundError):
                lines += _within(path.read_text("utf-8", errors="replace"), oldest, latest)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(name, "".join(lines))
        return buffer.getvalue()


class _DiagnosticsHandler(logging.handlers.RotatingFileHandler):
    """A rotating file that fails quietly: on a full or broken disk the first failed
    write says so once on stderr (the journal), later ones are dropped silently."""

    _failed = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if not self._failed:
            self._failed = True
            exc = sys.exc_info()[1]
            sys.stderr.write(f"diagnostics log {self.baseFilename}: lines dropped ({exc})\n")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            super().close()


def _private(path: Path) -> None:
    """Create ``path`` readable by the service only (it may hold identifiers)."""
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
    path.chmod(0o600)


def _line_time(line: str) -> float | None:
    try:
        return datetime.fromisoformat(line[:23]).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _within(text: str, oldest: float | None, latest: float | None) -> list[str]:
    kept, keep = [], True
    for line in text.splitlines(keepends=True):
        stamp = _line_time(line)
        if stamp is not None:
            keep = (oldest is None or stamp >= oldest) and (latest is None or stamp <= latest)
        if keep:
            kept.append(line)
    return kept


# ------------------------------------------------------------------ upload
def safe_url(url: str) -> str:
    """``url`` without its user info, for the log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def upload(url: str, filename: str, data: bytes, *, timeout_s: float = UPLOAD_TIMEOUT_S) -> str:
    """One attempt: PUT (or POST on 405) ``data`` to ``url``; the UploadLogStatus."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        logger.error(
            "log upload to %s: %s is not supported (HTTP and HTTPS are)",
            safe_url(url),
            parts.scheme.upper() or "a location without a scheme",
        )
        return "UploadFailure"
    target = safe_url(url)
    if target.endswith("/"):
        target += filename
    headers = {}
    if parts.username is not None:
        credentials = f"{parts.username}:{parts.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
    put = Request(target, data=data, method="PUT", headers=headers)
    put.add_header("Content-Type", "application/zip")
    try:
        try:
            return _send(put, timeout_s)
        except HTTPError as exc:
            if exc.code != 405:
                raise
        logger.info("log upload: %s refuses PUT, trying POST", safe_url(target))
        return _send(_multipart(target, filename, data, headers), timeout_s)
    except HTTPError as exc:
        logger.warning("log upload to %s: HTTP %d %s", safe_url(target), exc.code, exc.reason)
        if exc.code in (401, 403):
            return "PermissionDenied"
        if exc.code in (405, 501):
            return "NotSupportedOperation"
        return "UploadFailure"
    except http.client.HTTPException as exc:
        logger.warning("log upload to %s: bad answer: %r", safe_url(target), exc)
        return "BadMessage"
    except (URLError, OSError, TimeoutError) as exc:
        logger.warning("log upload to %s failed: %s", safe_url(target), exc)
        return "UploadFailure"


def _send(request: Request, timeout_s: float) -> str:
    context = ssl.create_default_context() if request.type == "https" else None
    with urlopen(request, timeout=timeout_s, context=context) as answer:
        answer.read()
    return "Uploaded"


def _multipart(url: str, filename: str, data: bytes, headers: dict[str, str]) -> Request:
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = Request(url, data=body, method="POST", headers=headers)
    request.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    return request


class LogUploader:
    """Carries out :class:`UploadLog` commands one at a time; a new one replaces
    the upload in progress (N01.FR.12).  ``report`` gets each step."""

    def __init__(
        self,
        files: LogFiles,
        report: Callable[[LogUploadProgress], None],
        *,
        timeout_s: float = UPLOAD_TIMEOUT_S,
    ) -> None:
        self._files = files
        self._report = report
        self._timeout_s = timeout_s
        self._requests: asyncio.Queue[UploadLog] = asyncio.Queue()
        self._current: asyncio.Task[None] | None = None

    def request(self, command: UploadLog) -> None:
        self._requests.put_nowait(command)

    async def run(self) -> None:
        """Until cancelled; owns the upload task."""
        async with asyncio.TaskGroup() as group:
            while True:
                command = await self._requests.get()
                if self._current is not None and not self._current.done():
                    logger.info("log upload: cancelled for request %d", command.request_id)
                    self._current.cancel()
                self._current = group.create_task(self._upload(command))

    async def _upload(self, command: UploadLog) -> None:
        data = await asyncio.to_thread(
            self._files.collect, command.log_type, command.oldest_utc_s, command.latest_utc_s
        )
        status = "UploadFailure"
        for attempt in range(command.retries + 1):
            if attempt:
                await asyncio.sleep(command.retry_interval_s)
            self._report(LogUploadProgress(command.request_id, "Uploading"))
            status = await asyncio.to_thread(
                upload, command.url, command.filename, data, timeout_s=self._timeout_s
            )
            if status == "Uploaded":
                break
        logger.info(
            "log upload %d (%s, %d bytes) to %s: %s",
            command.request_id,
            command.log_type,
            len(data),
            safe_url(command.url),
            status,
        )
        self._report(LogUploadProgress(command.request_id, status))
