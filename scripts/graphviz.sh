#!/usr/bin/env bash
# Makes Graphviz's `dot` available for the test that renders `Workflow::to_dot()` with it
# (tests/pictures.rs): installs Debian's graphviz package when `dot` is absent (as root).
# Idempotent.
set -euo pipefail
log() { echo "[graflow graphviz setup] $*"; }
if command -v dot >/dev/null 2>&1; then
  log "dot present: $(dot -V 2>&1 | head -n1)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "[graflow graphviz setup] error: dot is not installed and this is not root; install Debian's graphviz package" >&2
  exit 1
fi
log "installing graphviz from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends graphviz >/dev/null 2>&1 || {
  apt-get update >/dev/null
  apt-get install -y --no-install-recommends graphviz >/dev/null
}
log "dot installed: $(dot -V 2>&1 | head -n1)"
