#!/usr/bin/env bash
# Benchmarks graflow-rs against Graflow 0.2 (Python) and the docker CLI, in one run:
# installs graflow==0.2.0 from PyPI into a throwaway venv, builds the Rust side in release
# mode, runs both sides alternately on the same workloads, prints a markdown table and writes
# it, with the machine description, to BENCHMARKS.md.
#
#   bench/compare.sh   (REPS=7 runs per row; DOCKER=0 skips the docker rows, REDIS=0 the redis rows)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-7}
DOCKER=${DOCKER:-1}
REDIS=${REDIS:-1}
work=$(mktemp -d)
redis_pid=""
cleanup() {
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; fi
  pkill -f "graflow.worker.main --redis-port ${redis_port:-0} " 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
results="$work/results.jsonl"

echo "== Graflow 0.2.0 into a throwaway venv" >&2
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check graflow==0.2.0 redis
echo "== graflow-bench (release)" >&2
cargo build -q --release -p graflow-bench
if [ "$DOCKER" = 1 ]; then
  bash graflow-docker/scripts/setup.sh >&2
fi

ours() { echo "   graflow-rs $*" >&2; ./target/release/graflow-bench "$@" >>"$results"; }
theirs() { echo "   graflow-py $*" >&2; "$work/venv/bin/python" bench/graflow_py.py "$@" >>"$results"; }

echo "== chain and fan-out, alternating" >&2
for n in 100 1000 10000; do
  for _ in $(seq "$REPS"); do ours chain "$n"; theirs chain "$n"; done
done
for rep in $(seq "$REPS"); do
  ours chain 100000
  # Graflow 0.2 needs minutes for this one: once.
  [ "$rep" = 1 ] && theirs chain 100000
done
for n in 10 100 1000 10000; do
  for _ in $(seq "$REPS"); do ours fanout "$n"; theirs fanout "$n"; done
done
echo "== checkpoints (10k chain: one when the run ends, one after every task)" >&2
for _ in $(seq "$REPS"); do ours checkpoint-end 10000; done
ours checkpoint-every-fast 10000
ours checkpoint-every 10000
echo "== per-task overhead" >&2
for _ in $(seq "$REPS"); do
  ours call 1000000
  ours handler 1000000
  theirs call 1000000
  theirs handler 10000
done
if [ "$DOCKER" = 1 ]; then
  echo "== out of process" >&2
  ours docker 11 python:3.11-slim
  ours docker8 11 python:3.11-slim
  ours process 31
  echo "== warm runners" >&2
  ours warm-process 1001
  ours warm-docker 21 python:3.11-slim
  ours docker-group 100 4 python:3.11-slim
fi
if [ "$REDIS" = 1 ]; then
  echo "== remote workers on one private redis-server" >&2
  bash graflow-redis/scripts/setup.sh >&2
  redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null &
  redis_pid=$!
  url="redis://127.0.0.1:$redis_port/0"
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  # Graflow 0.2's workers: started per row (as many as ours), each with its own key prefix.
  py_workers() { # COUNT PREFIX
    for i in $(seq "$1"); do
      (cd "$work" && "$work/venv/bin/python" -m graflow.worker.main --redis-port "$redis_port" --redis-host 127.0.0.1 \
        --redis-key-prefix "$2" --max-concurrent-tasks 16 --worker-id "py-w$i" --log-level ERROR >/dev/null 2>&1 &)
    done
    sleep 2
  }
  stop_py_workers() { pkill -f "graflow.worker.main --redis-port $redis_port " 2>/dev/null || true; sleep 0.5; }
  for n in 100 1000 10000; do
    for w in 1 2; do
      for rep in $(seq "$REPS"); do
        BENCH_WORKER_CONCURRENCY=16 ours redis "$n" "$w" "$url"
        # Graflow 0.2 takes about a minute for 10,000 tasks: fewer runs there.
        if [ "$n" -lt 10000 ] || [ "$rep" -le 2 ]; then
          py_workers "$w" "py$n-$w-$rep"
          echo "   graflow-py redis $n $w" >&2
          "$work/venv/bin/python" bench/graflow_py.py redis "$n" "$w" "$url" "py$n-$w-$rep" >>"$results" || echo "   (Graflow 0.2 failed this row)" >&2
          stop_py_workers
        fi
      done
    done
  done
  ours redis-rtt 200 "$url"
  ours redis-kill 5 "$url"
fi
echo "== large results through the process boundary (time; the engine's peak RSS over its baseline)" >&2
for _ in $(seq 3); do ours payload 50 process; done
ours payload 500 process
if [ "$DOCKER" = 1 ]; then
  for _ in $(seq 3); do ours payload 50 docker python:3.11-slim; done
  ours payload 500 docker python:3.11-slim
fi

machine="$work/machine.txt"
{
  echo "date:      $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cpu:       $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "memory:    $(free -h | awk '/^Mem:/ {print $2}')"
  echo "os:        $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
  echo "rust:      $(rustc --version)"
  echo "python:    $("$work/venv/bin/python" --version 2>&1), graflow $("$work/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("graflow"))')"
  if [ "$DOCKER" = 1 ]; then echo "docker:    $(docker version --format '{{.Server.Version}}') (daemon)"; fi
  if [ "$REDIS" = 1 ]; then echo "redis:     $(redis-server --version | head -n1)"; fi
  echo "reps:      $REPS per row"
} >"$machine"

python3 bench/report.py "$results" "$machine" | tee BENCHMARKS.md
