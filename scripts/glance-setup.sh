#!/usr/bin/env bash
# Install Debian's glance-api so the store tests can talk to a real Glance, and
# keystone (run under uwsgi) + keystonemiddleware so they can run one behind a real Keystone.
#
# Only as root on Debian/Ubuntu with apt-get; elsewhere it says so and exits 0 so the
# Glance tests skip instead of failing.  The package's postinst would start a
# system-wide glance-api on 0.0.0.0:9292; a temporary policy-rc.d (exit 101) forbids
# that, and is removed afterwards even if apt fails.  The tests run their own
# private Glance on 127.0.0.1 with a throw-away config.
set -u

pkgs=()
if ! command -v glance-api >/dev/null 2>&1 || ! command -v glance-manage >/dev/null 2>&1; then
    pkgs+=(glance-api)
fi
command -v keystone-manage >/dev/null 2>&1 || pkgs+=(keystone)
command -v uwsgi >/dev/null 2>&1 || pkgs+=(uwsgi)
[ -e /usr/lib/uwsgi/plugins/python3_plugin.so ] || pkgs+=(uwsgi-plugin-python3)
/usr/bin/python3 -c 'import keystonemiddleware' >/dev/null 2>&1 || pkgs+=(python3-keystonemiddleware)
if [ ${#pkgs[@]} = 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "glance-setup: not root on Debian; the Glance/Keystone tests will be skipped" >&2
    exit 0
fi

policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary: vhdport glance-setup.sh forbids starting services\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
# Answer the dbconfig/keystone questions explicitly: no database setup, no endpoint registration.
if command -v debconf-set-selections >/dev/null 2>&1; then
    debconf-set-selections <<'EOF' || true
glance-common glance/configure_db boolean false
glance-api glance/configure_db boolean false
glance-common glance/configure_ksat boolean false
glance-api glance/configure_ksat boolean false
glance-api glance/register-endpoint boolean false
keystone keystone/configure_db boolean false
keystone keystone/register-endpoint boolean false
keystone keystone/create-admin-tenant boolean false
EOF
fi

apt-get update -qq >/dev/null 2>&1 || true
if ! apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/tmp/glance-setup.$$.log 2>&1; then
    echo "glance-setup: apt-get install ${pkgs[*]} failed (log: /tmp/glance-setup.$$.log);" \
         "the Glance store tests will be skipped" >&2
    exit 0
fi
rm -f /tmp/glance-setup.$$.log
# In case a service got started anyway (policy-rc.d pre-existing and permissive), stop it.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl stop glance-api keystone uwsgi >/dev/null 2>&1 || true
fi
exit 0
