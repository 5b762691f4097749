# Environment of the recipe: add what your site needs (modules, CUDA paths) here.
. utils/env.sh   # sslspk's virtualenv and bin/ on PATH, C locale (see utils/env.sh)
