#!/usr/bin/env bash
# Install PgBouncer (Debian's `pgbouncer` package) for the benchmarks that compare
# mlproxy with it: `python -m benchmarks.passthrough` and `python -m benchmarks.mix`.
#
#   benchmarks/install-pgbouncer.sh          # as root, or through sudo
#
# The benchmarks start their own PgBouncer (session mode, a free port, a config in a
# temp dir), so the package's system service is not needed: when this script is what
# installed the package on a machine run by systemd, it stops and disables that service.
# Exit status 0 when pgbouncer is (now) installed, 1 when it could not be installed.
set -euo pipefail

found() { command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null || true; }

if [ -n "$(found)" ]; then
    echo "pgbouncer already installed: $(found) ($("$(found)" --version | head -n1))"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo)
else
    echo "install-pgbouncer: not root and no password-less sudo: run this script as root" >&2
    echo "  (or install PgBouncer yourself: apt-get install pgbouncer)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "install-pgbouncer: no apt-get on this machine: install PgBouncer with your" \
         "system's package manager (https://www.pgbouncer.org/install.html)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
install=("${SUDO[@]}" apt-get install -y -q --no-install-recommends pgbouncer)
if ! "${install[@]}"; then
    # The package lists may be missing or stale on a fresh machine.
    "${SUDO[@]}" apt-get update -q
    "${install[@]}"
fi

if [ -z "$(found)" ]; then
    echo "install-pgbouncer: apt-get finished but pgbouncer is still missing" >&2
    exit 1
fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    "${SUDO[@]}" systemctl disable --now pgbouncer.service >/dev/null 2>&1 || true
    echo "stopped and disabled the package's pgbouncer.service (the benchmarks start their own)"
fi
echo "pgbouncer installed: $(found) ($("$(found)" --version | head -n1))"
