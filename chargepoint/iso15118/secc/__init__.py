"""ISO 15118-20 SECC: the session state machine and what it needs (sans-I/O)."""
