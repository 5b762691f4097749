"""Uniform error reporting for the command-line entry points."""

from __future__ import annotations

import sys
from typing import Callable


def run_cli(work: Callable[[], None]) -> None:
    """Run ``work``; expected input errors print ``ERROR: ...`` (no traceback) and exit 1."""
    from sslspk.data.audio import AudioError
    from sslspk.utils.config import ConfigError
    from sslspk.utils.fileio import FormatError

    try:
        work()
    except (FormatError, ConfigError, AudioError, FileNotFoundError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"ERROR: {msg}", file=sys.stderr)
        sys.exit(1)
