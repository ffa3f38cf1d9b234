#!/usr/bin/env bash
# The whole test suite. Browser tests use Debian's chromium when it is installed.
source "$(dirname "$0")/bootstrap.sh"
python -m pytest "$@"
