"""The project's own errors, and their uniform reporting by the command-line entry points.

An :class:`SslspkError` is a failure the user can act on, with a message naming the culprit
(file and line, utterance and audio file, option or config key): ``run_cli`` prints it as
``ERROR: <message>`` and exits 1. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import sys
from typing import Callable

#: errno values of a full disk or quota, and of a file-size limit (RLIMIT_FSIZE)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
#: errno values of a path the file system refuses: no permission, or a read-only file system
REFUSED = (errno.EACCES, errno.EPERM, errno.EROFS)


class SslspkError(Exception):
    """A failure the user can act on; the message says what and where."""


class InputError(SslspkError, ValueError):
    """Input that cannot be used: a file or its contents, an argument or option value."""


class MissingIdError(InputError, KeyError):
    """Ids of one input that have no entry in another (e.g. trial ids without an embedding)."""

    def __str__(self) -> str:   # the message, not KeyError's repr of it
        return str(self.args[0]) if self.args else ""


class BusyError(SslspkError):
    """Another process is working on the same output (it holds the output's lock)."""


class TrainingError(SslspkError, RuntimeError):
    """Training cannot go on (e.g. a NaN loss); the last good checkpoint is kept."""


def run_cli(work: Callable[[], None]) -> None:
    """Run ``work``; an :class:`SslspkError`, a missing input file, a full disk or a path the file
    system refuses (no permission, read-only) prints ``ERROR: ...`` naming the path (no traceback) and
    exits 1. Anything else propagates with its traceback.

    After a failed write, what was complete before it is intact: outputs are written to temp files
    and renamed.
    """
    try:
        work()
    except (SslspkError, FileNotFoundError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        if e.errno in REFUSED and e.filename is not None:   # a path refused; others (e.g. EPERM of a signal) are bugs
            print(f"ERROR: {e.strerror}: {e.filename}: check the permissions of that path and of its folder, and "
                  "that its file system is not mounted read-only; complete outputs written before are intact",
                  file=sys.stderr)
            sys.exit(1)
        if e.errno not in DISK_FULL:
            raise
        where = f" writing {e.filename}" if e.filename else ""
        print(f"ERROR: disk full{where}: {e.strerror}; complete outputs written before are intact "
              "(temp files are renamed only when complete): free space and run the same command again",
              file=sys.stderr)
        sys.exit(1)
