#!/usr/bin/env python3
"""Is an output up to date? The stamp of the inputs and options that made it (sslspk/utils/stamp.py).

Usage: stamp.py check [--input FILE]... [--option NAME=VALUE]... [legacy options] OUTPUT
       stamp.py write [--input FILE]... [--option NAME=VALUE]... OUTPUT

check exits 0 when OUTPUT exists and OUTPUT.stamp records the SHA-256 of the content of each --input
(as it is now; file times play no part) and the same --option values, 1 otherwise (the reason on
stdout). write records them in OUTPUT.stamp, atomically: the steps call it after OUTPUT is complete.

Migration of an output made before stamps (no OUTPUT.stamp): --legacy-marker FILE --legacy-content TEXT
accepts it when FILE (its old record) holds TEXT, --adopt-unstamped true when it merely exists (the old
rule of that step); it is then stamped (the old marker removed) and check exits 0.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["check", "write"])
    p.add_argument("output", help="the output file or directory (its stamp: OUTPUT.stamp)")
    p.add_argument("--input", action="append", default=[], help="an input file (repeat); absent files count too")
    p.add_argument("--option", action="append", default=[], help="NAME=VALUE of an option that changes OUTPUT")
    p.add_argument("--legacy-marker", help="check: the old record of an unstamped OUTPUT")
    p.add_argument("--legacy-content", help="check: what --legacy-marker holds when OUTPUT is fresh")
    p.add_argument("--adopt-unstamped", choices=["true", "false"], default="false",
                   help="check: an unstamped OUTPUT that exists is fresh (the old rule: existence)")
    args = p.parse_args(argv)

    from sslspk.utils.errors import run_cli

    def work() -> None:
        from sslspk.utils.stamp import stamp_command

        if not stamp_command(args.action, args.output, args.input, args.option, legacy_marker=args.legacy_marker,
                             legacy_content=args.legacy_content, adopt_unstamped=args.adopt_unstamped == "true"):
            sys.exit(1)

    run_cli(work)


if __name__ == "__main__":
    main()
