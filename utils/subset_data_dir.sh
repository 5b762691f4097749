#!/usr/bin/env bash
# Kaldi-style wrapper: python -m sslspk.bin.data_dir subset (see --help).
# Uses $SSLSPK_PYTHON if set, else python3 from PATH (path.sh puts .venv/bin first).
set -euo pipefail
exec "${SSLSPK_PYTHON:-python3}" -m sslspk.bin.data_dir subset "$@"
