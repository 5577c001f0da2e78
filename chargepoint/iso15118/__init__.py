"""ISO 15118-20 wire layer and session logic (sans-I/O)."""
