"""Smart charging (OCPP block K), sans-I/O: charging profiles, their store, the composite
schedule."""
