#!/usr/bin/env bash
# Makes PostgreSQL's server programs (initdb, pg_ctl, postgres) available for the store's tests:
# installs Debian's postgresql package when they are absent (as root). Debian keeps them in
# /usr/lib/postgresql/<version>/bin, off PATH, which is where tests/pg/mod.rs looks. Starts
# nothing: each test starts a server of its own on a private loopback port (as the system user
# graflow-pg when run as root, which it creates). Idempotent.
set -euo pipefail
# The bin directory of the newest server installed, or nothing.
server_bin() {
  local dir best=
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V || true); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then best=$dir; fi
  done
  echo "$best"
}
if [ -z "$(server_bin)" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "[graflow store setup] error: PostgreSQL's server is not installed and this is not root; install Debian's postgresql package" >&2
    exit 1
  fi
  echo "[graflow store setup] installing postgresql from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends postgresql >/dev/null 2>&1 || {
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends postgresql >/dev/null
  }
  # The package may start a system cluster (port 5432); the tests do not use it.
  pg_lsclusters --no-header 2>/dev/null | while read -r version cluster _; do
    pg_ctlcluster "$version" "$cluster" stop >/dev/null 2>&1 || true
  done || true
  service postgresql stop >/dev/null 2>&1 || true
fi
bin=$(server_bin)
if [ -z "$bin" ]; then
  echo "[graflow store setup] error: no initdb, pg_ctl and postgres in /usr/lib/postgresql/*/bin; install Debian's postgresql package (apt-get install postgresql)" >&2
  exit 1
fi
echo "[graflow store setup] $("$bin/postgres" --version)"
