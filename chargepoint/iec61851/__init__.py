"""IEC 61851-1 control pilot logic (sans-I/O)."""
