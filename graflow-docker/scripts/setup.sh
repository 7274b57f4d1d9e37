#!/usr/bin/env bash
# Makes a Docker daemon answer and builds, without any container registry, the images the
# docker tests and examples use. Idempotent: whatever is already there is kept.
#
#   - no daemon answers and we are root: install docker.io (if dockerd is missing) and start
#     dockerd in the background;
#   - graflow/scratch:latest: an empty image (what FROM scratch gives), for static runners;
#   - python:3.11-slim: pulled if a registry answers; otherwise, and only when the tag is
#     absent, a Debian bookworm root filesystem with python3 (3.11) made by debootstrap and
#     imported under that tag (the output says so). The root filesystem is cached. debootstrap
#     fetches from the Debian mirror this machine's apt uses, else from its own default.
set -euo pipefail

log() { echo "[graflow docker setup] $*"; }
fail() { echo "[graflow docker setup] error: $*" >&2; exit 1; }
daemon_up() { docker info >/dev/null 2>&1; }
as_root() { [ "$(id -u)" = 0 ]; }

# The Debian mirror this machine's apt already uses for SUITE (or, on a Debian host, for its own
# release): the first enabled "deb" entry of ETC/apt/sources.list, then ETC/apt/sources.list.d/
# (*.list one-line entries and *.sources deb822 stanzas, in apt's order), with that suite and the
# main component and an http(s) or file URI. Prints nothing when there is none. ETC: default /etc.
host_debian_mirror() {
  local suite=$1 etc=${2:-/etc} own="" files=() f
  if [ -r "$etc/os-release" ]; then
    own=$(. "$etc/os-release" && if [ "${ID:-}" = debian ]; then echo "${VERSION_CODENAME:-}"; fi)
  fi
  [ -r "$etc/apt/sources.list" ] && files+=("$etc/apt/sources.list")
  for f in "$etc"/apt/sources.list.d/*; do
    case $f in *.list | *.sources) [ -r "$f" ] && files+=("$f") ;; esac
  done
  [ ${#files[@]} -gt 0 ] || return 0
  awk -v want="$suite" -v own="$own" '
    function has(list, word,   n, a, i) {
      n = split(list, a, /[ \t]+/)
      for (i = 1; i <= n; i++) if (a[i] == word) return 1
      return 0
    }
    function consider(types, uris, suites, components, enabled,   n, a, i) {
      if (found || !has(types, "deb") || !has(components, "main") || tolower(enabled) ~ /^[ \t]*no/) return
      if (!has(suites, want) && !(own != "" && has(suites, own))) return
      n = split(uris, a, /[ \t]+/)
      for (i = 1; i <= n; i++) if (a[i] ~ /^(https?|file):/) { print a[i]; found = 1; return }
    }
    function end_stanza() {
      if (stanza) consider(field["types"], field["uris"], field["suites"], field["components"], field["enabled"])
      split("", field); stanza = 0; key = ""
    }
    FNR == 1 { end_stanza(); deb822 = FILENAME ~ /\.sources$/ }
    found { exit }
    deb822 && /^[ \t]*$/ { end_stanza(); next }
    deb822 && /^#/ { next }
    deb822 && /^[ \t]/ { if (key != "") field[key] = field[key] " " $0; next }
    deb822 {
      i = index($0, ":"); if (!i) next
      key = tolower(substr($0, 1, i - 1)); field[key] = substr($0, i + 1); stanza = 1; next
    }
    {
      line = $0; sub(/#.*/, "", line); gsub(/\[[^]]*\]/, " ", line)
      n = split(line, w, /[ \t]+/); j = (w[1] == "") ? 2 : 1
      if (w[j] != "deb") next
      components = ""; for (i = j + 3; i <= n; i++) components = components " " w[i]
      consider("deb", w[j + 1], w[j + 2], components, "yes")
    }
    END { if (!found) end_stanza() }
  ' "${files[@]}"
}

apt_install() {
  as_root || fail "need root to install $*"
  log "installing $* from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! daemon_up; then
  as_root || fail "no Docker daemon answers; start one (or run this script as root to install and start dockerd)"
  command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 || apt_install docker.io
  log "no Docker daemon answers: starting dockerd (log: /var/log/graflow-dockerd.log)"
  nohup dockerd >/var/log/graflow-dockerd.log 2>&1 &
  for _ in $(seq 1 90); do
    daemon_up && break
    sleep 1
  done
  daemon_up || { tail -n 30 /var/log/graflow-dockerd.log >&2 || true; fail "dockerd did not come up within 90 s"; }
fi
log "Docker daemon $(docker version --format '{{.Server.Version}}') answers"

if ! docker image inspect graflow/scratch:latest >/dev/null 2>&1; then
  tar -cf - -T /dev/null | docker import -m "graflow: empty image, as FROM scratch" - graflow/scratch:latest >/dev/null
  log "built graflow/scratch:latest (empty, as FROM scratch)"
fi

if docker image inspect python:3.11-slim >/dev/null 2>&1; then
  log "python:3.11-slim is present"
elif pull_error=$(timeout 120 docker pull -q python:3.11-slim 2>&1); then
  log "pulled python:3.11-slim"
else
  log "python:3.11-slim is absent and cannot be pulled (${pull_error##*$'\n'})"
  log "building it instead: Debian bookworm + python3 (3.11) by debootstrap, imported as python:3.11-slim"
  cache_dir=${GRAFLOW_CACHE_DIR:-/var/cache/graflow}
  rootfs_tar="$cache_dir/bookworm-python3-rootfs.tar"
  if [ ! -s "$rootfs_tar" ]; then
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    as_root || fail "debootstrap needs root"
    mkdir -p "$cache_dir"
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    mirror=$(host_debian_mirror bookworm) || mirror=""
    if [ -n "$mirror" ]; then
      log "debootstrap from $mirror (this machine's apt sources; log: $cache_dir/debootstrap.log)"
    else
      log "no Debian mirror for bookworm in this machine's apt sources: debootstrap from its default mirror"
    fi
    # No mirror: no argument, and debootstrap takes its default.
    debootstrap --variant=minbase --include=python3 bookworm "$rootfs" ${mirror:+"$mirror"} \
      >"$cache_dir/debootstrap.log" 2>&1 || { tail -n 30 "$cache_dir/debootstrap.log" >&2; fail "debootstrap failed"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$rootfs_tar.partial" .
    mv "$rootfs_tar.partial" "$rootfs_tar"
    rm -rf "$rootfs"
    trap - EXIT
  fi
  docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' \
    -m "graflow: Debian bookworm + python3 by debootstrap (no registry reachable)" \
    "$rootfs_tar" python:3.11-slim >/dev/null
  log "imported python:3.11-slim ($(docker run --rm python:3.11-slim python3 --version))"
fi
