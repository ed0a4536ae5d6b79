#!/usr/bin/env bash
# What fuzz/run.sh needs, installed when missing (Debian; root or sudo):
#   clang and libclang-rt-14-dev  libFuzzer, ASan and UBSan runtimes (core)
#   atheris (PyPI)                the Python fuzzer (parsers)
# Idempotent and quiet when all is there. The kernel-test apt list lives in
# scripts/kernel-prereqs.sh; this one is only for the fuzzers.
set -euo pipefail
PYTHON="${PYTHON:-python3}"

have_libfuzzer() {
    command -v clang >/dev/null || return 1
    printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' |
        clang -x c -fsanitize=fuzzer,address,undefined -o /dev/null - 2>/dev/null
}

if ! have_libfuzzer; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq || echo "fuzz/prereqs.sh: apt-get update reported errors; continuing" >&2
    $sudo apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null
    have_libfuzzer || { echo "fuzz/prereqs.sh: clang cannot build libFuzzer targets" >&2; exit 1; }
fi

if ! "$PYTHON" -c "import atheris" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet --disable-pip-version-check atheris
fi
