"""Where the operating point comes from: limits from every source, combined (sans-I/O)."""
