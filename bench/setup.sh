#!/usr/bin/env bash
# Install what the benchmark compares against: nginx (static files + WebDAV PUT),
# curl, qemu-utils; isal into the venv.  Root on Debian only; elsewhere it says
# what is missing and the suite skips those rows.  The nginx package would start a
# system-wide server on port 80: a temporary policy-rc.d (exit 101) forbids that --
# the suite runs its own nginx on 127.0.0.1 with a private config.
set -u
venv=${1:-.venv}
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "bench setup: not root on Debian; missing ${need[*]} (their rows will be skipped)" >&2
    else
        policy=/usr/sbin/policy-rc.d
        created=0
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy"
            chmod 755 "$policy"
            created=1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null 2>&1 || true
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
            || echo "bench setup: apt-get install ${need[*]} failed" >&2
        if [ "$created" = 1 ]; then rm -f "$policy"; fi
        # in case a distribution service got started anyway
        if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx >/dev/null 2>&1 || true; fi
    fi
fi
if [ -x "$venv/bin/python" ]; then
    "$venv/bin/python" -c "import isal" 2>/dev/null \
        || "$venv/bin/python" -m pip install -q isal \
        || echo "bench setup: pip install isal failed; vhdport falls back to zlib" >&2
fi
exit 0
