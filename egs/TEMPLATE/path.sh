# Environment of the recipe: sslspk's virtualenv and bin/ on PATH, C-locale sorting.
SSLSPK_ROOT=${SSLSPK_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export SSLSPK_ROOT
if [ -d "$SSLSPK_ROOT/.venv/bin" ]; then export PATH="$SSLSPK_ROOT/.venv/bin:$PATH"; fi
export PATH="$SSLSPK_ROOT/bin:$PATH"
export SSLSPK_PYTHON=python3 PYTHONUNBUFFERED=1 LC_ALL=C
