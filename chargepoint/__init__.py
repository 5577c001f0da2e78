"""Bidirectional EV charger controller.

The protocol and decision logic (everything outside :mod:`chargepoint.adapters`
and the CLI) is sans-I/O: typed events plus ``now`` in, typed actions out.
"""

__version__ = "0.1.0"
