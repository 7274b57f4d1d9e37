#!/usr/bin/env bash
# Makes COMMAND available by installing Debian's PACKAGE when COMMAND is absent (as root; tries
# without, then after, `apt-get update`). Idempotent. Used for Graphviz (`dot`, for the test that
# renders Workflow::to_dot()) and by graflow-redis/scripts/setup.sh for redis-server.
#
#   bash scripts/debian-package.sh COMMAND PACKAGE
set -euo pipefail
command=${1:?usage: debian-package.sh COMMAND PACKAGE}
package=${2:?usage: debian-package.sh COMMAND PACKAGE}
log() { echo "[graflow setup: $package] $*"; }
if command -v "$command" >/dev/null 2>&1; then
  log "$command present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "[graflow setup: $package] error: $command is not installed and this is not root; install Debian's $package package" >&2
  exit 1
fi
log "installing $package from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "$package" >/dev/null 2>&1 || {
  apt-get update >/dev/null
  apt-get install -y --no-install-recommends "$package" >/dev/null
}
log "$command installed"
