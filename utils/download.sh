#!/usr/bin/env bash
# Resumable download of one file, checked against a checksum when one is known.
#
# Usage: utils/download.sh [--checksum md5:SUM|sha256:SUM] <url> <out>
#        utils/download.sh --checksum md5:SUM|sha256:SUM --check-only true <file>
#  e.g.: utils/download.sh --checksum md5:0a1b... https://www.openslr.org/resources/17/musan.tar.gz raw/musan.tar.gz
#
# Fetches with `wget -c` (or `curl -C -`), so an interrupted download continues where it stopped;
# credentials come from $DOWNLOAD_USER / $DOWNLOAD_PASSWORD when set. With --checksum the file must
# match (a mismatch stops with the file's name: delete it to download again); without one it is not
# verified and a warning says so. <out>.ok marks a checked download: it is not fetched again.
set -euo pipefail

checksum=       # md5:<sum> or sha256:<sum> (empty: not verified)
check_only=false  # true: only verify <file> against --checksum

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/parse_options.sh"

verify() {  # <file>
  local f=$1 algo=${checksum%%:*} sum=${checksum#*:} actual
  if [ -z "$checksum" ]; then
    echo "$0: WARNING: no checksum for $(basename "$f"): not verified" >&2
    return 0
  fi
  case $algo in md5|sha256) ;; *) echo "$0: --checksum must be md5:SUM or sha256:SUM, got '$checksum'" >&2; exit 1 ;; esac
  actual=$("${algo}sum" "$f" | cut -d' ' -f1)
  if [ "$actual" != "$sum" ]; then
    echo "$0: $f: $algo $actual, expected $sum; delete it to download again" >&2
    exit 1
  fi
  echo "$0: $(basename "$f"): $algo OK"
}

if [ "$check_only" = true ]; then
  [ $# -eq 1 ] && [ -n "$checksum" ] || { echo "Usage: $0 --checksum ALGO:SUM --check-only true <file>" >&2; exit 1; }
  verify "$1"
  exit 0
fi
[ $# -eq 2 ] || { echo "Usage: $0 [--checksum md5:SUM|sha256:SUM] <url> <out>" >&2; exit 1; }
url=$1; out=$2
[ -f "$out.ok" ] && exit 0
mkdir -p "$(dirname "$out")"
if command -v wget > /dev/null 2>&1; then
  auth=(); [ -z "${DOWNLOAD_USER:-}" ] || auth=(--user "$DOWNLOAD_USER" --password "${DOWNLOAD_PASSWORD:-}")
  wget -c --tries 5 "${auth[@]}" -O "$out" "$url"
else
  auth=(); [ -z "${DOWNLOAD_USER:-}" ] || auth=(--user "$DOWNLOAD_USER:${DOWNLOAD_PASSWORD:-}")
  curl -fL --retry 5 -C - "${auth[@]}" -o "$out" "$url"
fi
verify "$out"
touch "$out.ok"
