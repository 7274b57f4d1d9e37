#!/usr/bin/env bash
# Makes a Docker daemon answer and builds, without any container registry, the images the
# docker tests and examples use. Idempotent: whatever is already there is kept.
#
#   - no daemon answers and we are root: install docker.io (if dockerd is missing) and start
#     dockerd in the background;
#   - graflow/scratch:latest: an empty image (what FROM scratch gives), for static runners;
#   - python:3.11-slim: pulled if a registry answers; otherwise, and only when the tag is
#     absent, a Debian bookworm root filesystem with python3 (3.11) made by debootstrap and
#     imported under that tag (the output says so). The root filesystem is cached.
set -euo pipefail

log() { echo "[graflow docker setup] $*"; }
fail() { echo "[graflow docker setup] error: $*" >&2; exit 1; }
daemon_up() { docker info >/dev/null 2>&1; }
as_root() { [ "$(id -u)" = 0 ]; }

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
    debootstrap --variant=minbase --include=python3 bookworm "$rootfs" http://deb.debian.org/debian \
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
