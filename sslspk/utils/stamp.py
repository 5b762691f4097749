"""Stale outputs: one rule for every step, a stamp of the inputs and options that made an output.

``Stamp(inputs=[files], options={...})`` names what an output is made from. Its record, written as JSON
to ``<output>.stamp`` (atomically, after the output is complete), holds the SHA-256 of each input
file's content (``-`` for a file that is absent) and the options as strings; the output is fresh when
it exists and its stamp holds the same record. File times play no part: a touched input changes
nothing, an input rewritten with other content (whatever its time) makes the output stale.

An input that has a stamp itself (e.g. an ``embeddings.scp`` made by extraction) is recorded as its
content digest followed by that of its stamp's record, so what made it counts too: an scp whose text
is unchanged (the same ark offsets) but whose embeddings come from another model is a changed input.
This is what keeps the digests small at VoxCeleb size: the big files hashed are the model's
``model.pt`` (some 400 MB for WavLM Base+) and the embeddings files handed in by a user; audio is
never read (a data dir is its ``wav.scp``/``segments``/``utt2spk`` tables) and arks are
represented by their scp and its stamp.

The stamp also names the sslspk version that wrote it (not compared: a new version does not redo a
VoxCeleb extraction). ``stamp.py check|write`` gives the same to the shell steps.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

SUFFIX = ".stamp"


def stamp_path(output: str | os.PathLike) -> Path:
    """Where the stamp of ``output`` (a file or a directory) is: ``<output>.stamp`` beside it."""
    return Path(f"{os.fspath(output).rstrip('/')}{SUFFIX}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _record_digest(record: dict) -> str:
    return hashlib.sha256(json.dumps({k: record.get(k) for k in ("inputs", "options")},
                                     sort_keys=True).encode()).hexdigest()


def input_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content, ``-`` when absent; ``+<digest of its stamp's record>`` appended when
    the file has a stamp of its own."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: a stamp input must be a file (pass the files of a directory)")
    if not path.is_file():
        return "-"
    own = read_stamp(path)
    return _sha256(path) + (f"+{_record_digest(own)}" if own is not None else "")


def read_stamp(output: str | os.PathLike) -> dict | None:
    """The record in ``output``'s stamp, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads(stamp_path(output).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


@dataclass
class Stamp:
    """The inputs (files, by path as given) and options that make an output."""

    inputs: Iterable[str | os.PathLike | None] = ()
    options: dict[str, object] = field(default_factory=dict)

    def record(self) -> dict:
        """``{"inputs": {path: digest}, "options": {name: str(value)}}`` of the inputs as they are now
        (None entries, options not given, are left out; a None option value is recorded as ``""``)."""
        return {"inputs": {os.fspath(p): input_digest(p) for p in self.inputs if p is not None},
                "options": {k: "" if v is None else str(v) for k, v in sorted(self.options.items())}}

    def changes(self, output: str | os.PathLike, need_output: bool = True) -> list[str] | None:
        """What differs between ``output``'s stamp and now: the changed input paths and option names
        (``[]``: fresh); None when the stamp (or, with ``need_output``, ``output``) does not exist."""
        old = read_stamp(output)
        if old is None or (need_output and not os.path.exists(output)):
            return None
        new = self.record()
        changed = []
        for part in ("inputs", "options"):
            before, now = old.get(part) or {}, new[part]
            changed += [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
        return changed

    def is_fresh(self, output: str | os.PathLike) -> bool:
        """Whether ``output`` exists with a stamp of these inputs and options."""
        return self.changes(output) == []

    def why_stale(self, output: str | os.PathLike) -> str | None:
        """None when fresh, else a short reason naming the changed inputs and options."""
        changed = self.changes(output)
        if changed == []:
            return None
        if changed is None:
            return f"{output} does not exist" if not os.path.exists(output) else f"{output} has no stamp"
        return f"{output} was made from other inputs or options: {', '.join(changed)} changed"

    def write(self, output: str | os.PathLike) -> None:
        """Record these inputs and options as what made ``output`` (call once ``output`` is complete)."""
        from sslspk import __version__
        from sslspk.utils.fileio import atomic_write

        with atomic_write(stamp_path(output)) as f:
            json.dump({**self.record(), "sslspk": __version__}, f, indent=1, sort_keys=True)
            f.write("\n")

    def adopt(self, output: str | os.PathLike, legacy_fresh: bool) -> bool:
        """Migration of an output made before stamps: when ``output`` exists without a stamp and its old
        rule (``legacy_fresh``) judged it fresh, write the stamp and return True (it is not redone)."""
        if legacy_fresh and os.path.exists(output) and read_stamp(output) is None:
            self.write(output)
            return True
        return False


def stamp_command(action: str, output: str, inputs: Iterable[str], options: Iterable[str], *,
                  legacy_marker: str | None = None, legacy_content: str | None = None,
                  adopt_unstamped: bool = False) -> bool:
    """``stamp.py``: ``write`` the stamp of ``inputs`` and ``options`` (``NAME=VALUE`` items) for ``output``, or
    ``check`` it: whether ``output`` is fresh (the reason printed when not). An unstamped ``output`` made before
    stamps is adopted (stamped, fresh) when ``legacy_marker`` holds ``legacy_content`` (the marker is then
    removed) or, without a marker, with ``adopt_unstamped`` (its old rule: it exists)."""
    from sslspk.utils.errors import InputError

    values = {}
    for item in options:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InputError(f"--option {item!r}: expected NAME=VALUE")
        values[name] = value
    stamp = Stamp(list(inputs), values)
    if action == "write":
        stamp.write(output)
        return True
    if (legacy_marker is None) != (legacy_content is None):
        raise InputError("--legacy-marker and --legacy-content go together")
    legacy = adopt_unstamped
    if legacy_marker is not None:
        marker = Path(legacy_marker)
        legacy = marker.is_file() and marker.read_text().strip() == legacy_content.strip()
    if stamp.adopt(output, legacy):
        if legacy_marker is not None:
            Path(legacy_marker).unlink()
        print(f"{output}: made before stamps and up to date by its old rule: stamped")
        return True
    reason = stamp.why_stale(output)
    if reason is not None:
        print(reason)
        return False
    return True


def remove_stamp(output: str | os.PathLike) -> None:
    """Remove ``output``'s stamp (before the output is rewritten: a half-made output is never fresh)."""
    stamp_path(output).unlink(missing_ok=True)
