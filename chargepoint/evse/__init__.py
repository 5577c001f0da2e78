"""The per-EVSE controller: IEC 61851-1 pilot logic plus the safety supervisor (sans-I/O)."""
