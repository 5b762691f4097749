#!/usr/bin/env bash
# Download and unpack VoxCeleb1 (dev + test), VoxCeleb2 dev, the Vox1-O/E/H trial lists, MUSAN and
# RIRS_NOISES into <dir> (egs/voxceleb/v1 stage 0 with --download true). Resumable: every file is
# fetched with `wget -c` (or `curl -C -`), checked against local/voxceleb_checksums.txt, split
# archives are concatenated (vox1 dev partaa..partad, vox2 dev partaa..partah) and unpacked once
# (a .done marker per part).
#
# Usage: local/download_voxceleb.sh [options] <dir>
#  e.g.: VOXCELEB_URL=https://... VOXCELEB_USER=me VOXCELEB_PASSWORD=secret \
#          local/download_voxceleb.sh --parts "vox1 vox2 musan rirs" /data/voxceleb_raw
#
# VoxCeleb is licensed per user: request access on the VGG site
# (https://www.robots.ox.ac.uk/~vgg/data/voxceleb/) and pass the base URL of the archives you are
# given with --vox-url or $VOXCELEB_URL (a file name is appended: <url>/vox1_dev_wav_partaa; a URL
# containing {file} has it replaced, for key-based links like ...&file={file}), plus credentials
# with $VOXCELEB_USER / $VOXCELEB_PASSWORD when your links need them. Nothing secret is stored here.
#
# Result (what local/prepare_voxceleb.py reads):
#   <dir>/voxceleb1/wav/<spk>/<video>/<n>.wav, <dir>/voxceleb1/{veri_test2,list_test_all2,list_test_hard2}.txt
#   <dir>/voxceleb2/dev/aac/<spk>/<video>/<n>.m4a
#   <dir>/musan/{noise,music,speech}/, <dir>/RIRS_NOISES/simulated_rirs/
set -euo pipefail

parts="vox1 vox2 musan rirs"   # what to fetch: any of vox1 vox2 musan rirs
vox_url=${VOXCELEB_URL:-}      # base URL (or template with {file}) of the VoxCeleb archives
meta_url=https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta   # trial lists
musan_url=https://www.openslr.org/resources/17/musan.tar.gz   # OpenSLR 17
rirs_url=https://www.openslr.org/resources/28/rirs_noises.zip  # OpenSLR 28
checksums=local/voxceleb_checksums.txt   # <file> <md5|sha256> <checksum|->
keep_archives=true             # false: delete archives once unpacked

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -f "$checksums" ] || checksums=$here/local/voxceleb_checksums.txt
. "$here/utils/parse_options.sh"

if [ $# -ne 1 ]; then
  echo "Usage: $0 [--parts 'vox1 vox2 musan rirs'] [--vox-url URL] <dir>   (--help for more)" >&2
  exit 1
fi
dir=$1
mkdir -p "$dir/archives"

checksum_of() {  # <file name>: algo:sum from the checksum table, or nothing when unknown
  awk -v n="$1" '$1 == n && $3 != "-" { print $2 ":" $3 }' "$checksums"
}

get() {  # <url> <file name in archives/>: resumable download, checked against the table
  DOWNLOAD_USER=${VOXCELEB_USER:-} DOWNLOAD_PASSWORD=${VOXCELEB_PASSWORD:-} \
    "$here/utils/download.sh" --checksum "$(checksum_of "$2")" "$1" "$dir/archives/$2"
}

vox_file_url() {  # <file name>: the URL of a VoxCeleb archive
  if [ -z "$vox_url" ]; then
    echo "$0: VoxCeleb needs the download URL you received from the VGG site: pass --vox-url or set" \
         "VOXCELEB_URL (and VOXCELEB_USER/VOXCELEB_PASSWORD if required)" >&2
    exit 1
  fi
  case $vox_url in *'{file}'*) echo "${vox_url//\{file\}/$1}" ;; *) echo "${vox_url%/}/$1" ;; esac
}

concat_unzip() {  # <zip name> <dest dir> <part files...>
  local zip=$1 dest=$2; shift 2
  [ -f "$dest/.done.$zip" ] && { echo "$0: $zip already unpacked in $dest"; return 0; }
  if [ $# -gt 0 ]; then
    (cd "$dir/archives" && cat "$@" > "$zip.tmp" && mv "$zip.tmp" "$zip")
    local sum; sum=$(checksum_of "$zip")
    [ -z "$sum" ] || "$here/utils/download.sh" --checksum "$sum" --check-only true "$dir/archives/$zip"
  fi
  mkdir -p "$dest"
  unzip -q -o "$dir/archives/$zip" -d "$dest"
  touch "$dest/.done.$zip"
  [ "$keep_archives" = true ] || (cd "$dir/archives" && rm -f "$zip" "$@")
}

for part in $parts; do
  case $part in
    vox1)
      for p in aa ab ac ad; do get "$(vox_file_url vox1_dev_wav_part$p)" vox1_dev_wav_part$p; done
      get "$(vox_file_url vox1_test_wav.zip)" vox1_test_wav.zip
      concat_unzip vox1_dev_wav.zip "$dir/voxceleb1" vox1_dev_wav_parta{a,b,c,d}
      concat_unzip vox1_test_wav.zip "$dir/voxceleb1"
      for t in veri_test2.txt list_test_all2.txt list_test_hard2.txt; do
        [ -s "$dir/voxceleb1/$t" ] || "$here/utils/download.sh" "$meta_url/$t" "$dir/voxceleb1/$t"
      done ;;
    vox2)
      for p in aa ab ac ad ae af ag ah; do get "$(vox_file_url vox2_dev_aac_part$p)" vox2_dev_aac_part$p; done
      concat_unzip vox2_dev_aac.zip "$dir/voxceleb2" vox2_dev_aac_parta{a,b,c,d,e,f,g,h} ;;
    musan)
      get "$musan_url" musan.tar.gz
      if [ ! -f "$dir/musan/.done" ]; then tar -xzf "$dir/archives/musan.tar.gz" -C "$dir" && touch "$dir/musan/.done"; fi ;;
    rirs)
      get "$rirs_url" rirs_noises.zip
      concat_unzip rirs_noises.zip "$dir" ;;
    *) echo "$0: unknown part '$part' (vox1 vox2 musan rirs)" >&2; exit 1 ;;
  esac
done
echo "$0: done: $parts in $dir"
