"""The LSM engine: bytes in, bytes out. Knows nothing of `str`, dbm flags or shelve."""
