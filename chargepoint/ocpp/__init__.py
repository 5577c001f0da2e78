"""OCPP 2.0.1 / 2.1 station logic (sans-I/O).

The `ocpp` package itself is used only in :mod:`chargepoint.adapters.ocpp_client`.
"""
