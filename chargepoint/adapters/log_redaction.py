"""No credential reaches a log, at any level.

Libraries log what they send at DEBUG: the WebSocket client logs its handshake
headers, ``Authorization: Basic <base64 of id:password>`` among them. The
filter sits on the service's log handler, so it sees every record from every
logger, and replaces credential values before anything is written: the value
of an Authorization header, a password in a URL (``scheme://user:pw@``, as a
CSMS may put in GetLog or UpdateFirmware locations), and PEM private-key
blocks. Our own OCPP frame log already leaves out frames that carry the
BasicAuthPassword.
"""

from __future__ import annotations

import logging
import re

_REDACTIONS = (
    (re.compile(r"(?i)(authorization['\"]?\s*[:=,]\s*['\"]?\s*\w+\s+)[^\s'\"]+"), r"\1[redacted]"),
    # user:password@ in a URL (GetLog / UpdateFirmware locations may carry them)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@'\"]+):[^\s/@'\"]+@"), r"\1:[redacted]@"),
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)",
            re.S,
        ),
        "[private key redacted]",
    ),
)


def redact(text: str) -> str:
    """``text`` with credential values replaced."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """A handler filter: rewrites a record whose message carries a credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
