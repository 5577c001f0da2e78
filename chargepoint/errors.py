"""The one exception tree of the project.

::

    ChargepointError
    ├── ConfigError                 a configuration file is unusable
    ├── ProtocolError
    │   ├── LocalProtocolError      we (this station) tried to break a protocol rule
    │   └── RemoteProtocolError     the peer (car, CSMS, board) broke one
    └── HalError                    (defined in :mod:`hal.errors`)
        ├── HalInitError            a device could not be opened or identified
        ├── HalOperationError       a device refused or failed a command
        └── HalTimeoutError         a device did not answer in time

Adapters catch the specific subclasses they can handle; nothing catches
``Exception`` wholesale.
"""

from __future__ import annotations


class ChargepointError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(ChargepointError):
    """A configuration file is missing, unparsable or invalid.

    ``problems`` holds one ``(key_path, message)`` pair per mistake so that a
    user sees every mistake at once, not just the first.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {path}: {msg}" for path, msg in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


class ProtocolError(ChargepointError):
    """A protocol rule was broken (by us or by the peer)."""


class LocalProtocolError(ProtocolError):
    """This station attempted something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids or that we cannot parse."""


class HalError(ChargepointError):
    """Base of hardware abstraction layer errors (see :mod:`hal.errors`)."""
