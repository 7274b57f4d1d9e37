#!/usr/bin/env bash
# Makes `redis-server` available for the redis tests, examples and benchmarks: installs Debian's
# package when the binary is absent (as root). Starts nothing: tests and examples start their own
# server on a private loopback port. Idempotent.
set -euo pipefail
log() { echo "[graflow redis setup] $*"; }
if command -v redis-server >/dev/null 2>&1; then
  log "redis-server present: $(redis-server --version | head -n1)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "[graflow redis setup] error: redis-server is not installed and this is not root; install Debian's redis-server package" >&2
  exit 1
fi
log "installing redis-server from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends redis-server >/dev/null 2>&1 || {
  apt-get update >/dev/null
  apt-get install -y --no-install-recommends redis-server >/dev/null
}
# The package may start its system server on port 6379; the tests do not use it.
if [ -x /etc/init.d/redis-server ]; then /etc/init.d/redis-server stop >/dev/null 2>&1 || true; fi
log "redis-server installed: $(redis-server --version | head -n1)"
