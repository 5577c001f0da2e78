"""sd_notify(3) over $NOTIFY_SOCKET, without libsystemd.

READY=1 once the safety loops run; WATCHDOG=1 only while every safety loop has
made a pass recently, so a stalled loop gets the service killed and restarted
by systemd (WatchdogSec=); STOPPING=1 on orderly shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self._address = address or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watchdog_for_us = not pid or pid == str(os.getpid())
        self.watchdog_interval_s = (
            int(usec) / 1e6 / 2 if usec.isdigit() and watchdog_for_us else None
        )

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, message: str) -> None:
        if self._address is None:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto(message.encode(), self._address)
            except OSError as exc:
                log.warning("sd_notify %r failed: %s", message, exc)

    async def watchdog_loop(self, alive: Callable[[], bool]) -> None:
        """Feed the watchdog only while ``alive()`` says the safety loops run."""
        interval = self.watchdog_interval_s
        if interval is None or not self.enabled:
            return
        while True:
            if alive():
                self.notify("WATCHDOG=1")
            else:
                log.error("safety loop stalled: not feeding the systemd watchdog")
            await asyncio.sleep(interval)
