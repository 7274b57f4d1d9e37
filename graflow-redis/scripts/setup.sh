#!/usr/bin/env bash
# Makes `redis-server` (and `openssl`, for the TLS test's certificates) available for the redis
# tests, examples and benchmarks: installs Debian's package when the binary is absent (as root). Starts nothing: tests and examples start their own
# server on a private loopback port. Idempotent.
set -euo pipefail
installed_before=$(command -v redis-server || true)
bash "$(dirname "$0")/../../scripts/debian-package.sh" redis-server redis-server
# The package may start its system server on port 6379; the tests do not use it.
if [ -z "$installed_before" ] && [ -x /etc/init.d/redis-server ]; then
  /etc/init.d/redis-server stop >/dev/null 2>&1 || true
fi
# The TLS test makes its certificates with the openssl command.
bash "$(dirname "$0")/../../scripts/debian-package.sh" openssl openssl
echo "[graflow redis setup] $(redis-server --version | head -n1); $(openssl version)"
