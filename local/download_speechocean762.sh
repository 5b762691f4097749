#!/usr/bin/env bash
# Download and unpack speechocean762 (OpenSLR resource 101, 520 MB) into <dir>/speechocean762
# (egs/speechocean762/v1 stage 0 with --download true). Resumable: the archive is fetched with
# `wget -c` (or `curl -C -`) by utils/download.sh, from the first --mirrors entry that answers, and
# unpacked once (a .done marker). OpenSLR publishes no checksum for this resource: pass --md5 to have
# the archive checked (otherwise a warning says it was not, and gzip's own check runs on unpacking).
#
# Usage: local/download_speechocean762.sh [--md5 SUM] <dir>
# Result (what local/prepare_speechocean762.py reads): <dir>/speechocean762/{WAVE,train,test,...}
set -euo pipefail

mirrors="https://www.openslr.org/resources/101 https://openslr.elda.org/resources/101 https://openslr.magicdatatech.com/resources/101"
md5=                 # md5 of speechocean762.tar.gz, when you have one
keep_archive=true    # false: delete the archive once unpacked

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$here/utils/parse_options.sh"
if [ $# -ne 1 ]; then
  echo "Usage: $0 [--md5 SUM] <dir>   (--help for more)" >&2
  exit 1
fi
dir=$1
archive=$dir/archives/speechocean762.tar.gz
if [ -f "$dir/speechocean762/.done" ]; then echo "$0: $dir/speechocean762 already unpacked"; exit 0; fi
for m in $mirrors; do
  "$here/utils/download.sh" ${md5:+--checksum md5:$md5} "$m/speechocean762.tar.gz" "$archive" && break
  echo "$0: $m failed, trying the next mirror" >&2
done
[ -f "$archive.ok" ] || { echo "$0: could not download speechocean762.tar.gz from any of: $mirrors" >&2; exit 1; }
tar -xzf "$archive" -C "$dir"
touch "$dir/speechocean762/.done"
[ "$keep_archive" = true ] || rm -f "$archive" "$archive.ok"
echo "$0: speechocean762 in $dir/speechocean762"
