"""``chargepoint demo``: the service on simulated hardware, driven like a user would.

The demos sit above the composition root (:mod:`chargepoint.app`): they build a
whole :class:`~chargepoint.app.Station` and talk to it through its control
socket, so they live here and not among the adapters it is built from.
"""
