#!/usr/bin/env bash
# Makes COMMAND available by installing Debian's PACKAGE when COMMAND is absent (as root; tries
# without, then after, `apt-get update`). Idempotent. Used for Graphviz (`dot`, for the test that
# renders Workflow::to_dot()), matplotlib (`python3:matplotlib`, for the test of the benchmark
# report's chart) and by graflow-redis/scripts/setup.sh for redis-server.
#
#   bash scripts/debian-package.sh COMMAND PACKAGE
#   bash scripts/debian-package.sh python3:MODULE PACKAGE   (present when /usr/bin/python3 imports MODULE)
set -euo pipefail
command=${1:?usage: debian-package.sh COMMAND PACKAGE}
package=${2:?usage: debian-package.sh COMMAND PACKAGE}
log() { echo "[graflow setup: $package] $*"; }
present() {
  case "$command" in
    # Debian's packages install for Debian's interpreter, whatever python3 is first on PATH.
    python3:*) /usr/bin/python3 -c "import ${command#python3:}" >/dev/null 2>&1 ;;
    *) command -v "$command" >/dev/null 2>&1 ;;
  esac
}
if present; then
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
if ! present; then
  echo "[graflow setup: $package] error: $package is installed but $command is still absent" >&2
  exit 1
fi
log "$command installed"
