"""The command line shared by train_ssl.py and train_pseudo.py: options, checks and the call (light
imports only, so that ``--help`` stays instant)."""

from __future__ import annotations

import argparse
from typing import Any


def training_parser(doc: str | None, config_help: str, data_help: str) -> argparse.ArgumentParser:
    """A parser with the options every training entry point takes (--config, --data, --exp-dir, --force,
    --set, --print-config); the caller adds its own."""
    from sslspk.utils.config import parse_bool

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help=config_help)
    p.add_argument("--data", help=f"{data_help} (required unless --print-config)")
    p.add_argument("--exp-dir", help="experiment dir (required unless --print-config)")
    p.add_argument("--force", type=parse_bool, default=False, metavar="true|false",
                   help="train again even if EXP_DIR/model.pt exists, or EXP_DIR holds a training with another config "
                        "(default false)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", dest="overrides",
                   help="override a config value (VALUE read as YAML, checked like the YAML; repeatable), "
                        "e.g. --set train.lr=2e-5 --set model.head=mhfa; EXP_DIR/config.yaml records the result")
    p.add_argument("--print-config", action="store_true",
                   help="print the merged, checked config with its defaults as YAML and exit (writes nothing)")
    return p


def run_training(p: argparse.ArgumentParser, args: argparse.Namespace, kind: str, **extra: Any) -> None:
    """--print-config, or the training of ``kind`` (ssl | pseudo) with ``extra`` keyword arguments of
    ``training_command`` (``init``, ``ref_utt2spk``), with the project's one-line errors."""
    from sslspk.utils.errors import run_cli

    if not args.print_config and (args.data is None or args.exp_dir is None):
        p.error("--data and --exp-dir are required (unless --print-config)")

    def work() -> None:
        from sslspk.experiment import training_command

        training_command(args.config, kind, data_dir=args.data, exp_dir=args.exp_dir, force=args.force,
                         overrides=args.overrides, print_only=args.print_config, **extra)

    run_cli(work)
