"""Small shared helpers: atomic file writes, Kaldi-style table I/O, logging."""
