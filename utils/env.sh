# Environment of a recipe, sourced by its path.sh: sslspk's virtualenv and bin/ on PATH, C-locale
# sorting. The repository root is found from this file's real location (recipes link utils/), so a
# recipe works at any depth; a pre-set SSLSPK_ROOT wins.
SSLSPK_ROOT=${SSLSPK_ROOT:-$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export SSLSPK_ROOT
if [ -d "$SSLSPK_ROOT/.venv/bin" ]; then export PATH="$SSLSPK_ROOT/.venv/bin:$PATH"; fi
export PATH="$SSLSPK_ROOT/bin:$PATH"
export SSLSPK_PYTHON=python3 PYTHONUNBUFFERED=1 LC_ALL=C
# glibc malloc: allocations up to 32 MB from the heap, freed memory kept for reuse (up to 1 GB) rather
# than handed back to the kernel: 4x fewer page faults, CPU training ~5-10% faster (docs/benchmarks.md).
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-33554432} MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-1073741824}
