"""Typed HAL errors, modelled on python-can's init / operation / timeout split."""

from __future__ import annotations

from chargepoint.errors import HalError


class HalInitError(HalError):
    """The device could not be opened, identified or configured."""


class HalOperationError(HalError):
    """The device refused a command, reported a failure, or sent garbage."""


class HalTimeoutError(HalError):
    """The device did not answer (or keep alive) within the allowed time."""


__all__ = ["HalError", "HalInitError", "HalOperationError", "HalTimeoutError"]
