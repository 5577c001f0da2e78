"""Safety supervisor (sans-I/O)."""
