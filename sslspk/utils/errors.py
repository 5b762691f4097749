"""Uniform error reporting for the command-line entry points."""

from __future__ import annotations

import errno
import sys
from typing import Callable

#: errno values of a full disk or quota, and of a file-size limit (RLIMIT_FSIZE)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class InputError(Exception):
    """Bad input the user can fix (a file, a line, a config value): the command-line tools print its
    message as one ``ERROR:`` line, without a traceback. The project's input errors derive from it."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a NaN loss); the last good checkpoint is kept."""


def run_cli(work: Callable[[], None]) -> None:
    """Run ``work``; expected input errors print ``ERROR: ...`` (no traceback) and exit 1.

    A full disk is reported the same way: outputs are written to temp files and renamed, so
    what was complete before the failed write is intact.
    """
    try:
        work()
    except (InputError, TrainingError, FileNotFoundError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"ERROR: {msg}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        where = f" writing {e.filename}" if e.filename else ""
        print(f"ERROR: disk full{where}: {e.strerror}; complete outputs written before are intact "
              "(temp files are renamed only when complete): free space and run the same command again",
              file=sys.stderr)
        sys.exit(1)
