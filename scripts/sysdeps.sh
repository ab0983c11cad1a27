#!/usr/bin/env bash
# Install the real peers the tests use, when we can (root on Debian).  Elsewhere the
# tests that need them skip with a message saying what is missing -- and fail under CI=true
# (tests/peers/require.py), so CI never passes without them.
set -u
need=()
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
here=$(dirname "$0")
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "sysdeps: not root on Debian; tests needing ${need[*]} will be skipped (fail under CI=true)" >&2
    else
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null 2>&1 || true
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
            || echo "sysdeps: apt-get install ${need[*]} failed; dependent tests will skip" >&2
    fi
fi
# a real OpenStack Glance for the store tests (the tests start and stop it themselves)
bash "$here/glance-setup.sh"
