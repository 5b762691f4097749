"""Thin argparse entry points (``bin/*.py``), also installed as ``sslspk-*`` console scripts."""
