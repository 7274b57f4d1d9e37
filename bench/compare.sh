#!/usr/bin/env bash
# Benchmarks graflow-rs against Graflow 0.2 (Python) and the docker CLI, in one run:
# installs graflow==0.2.0 (and matplotlib, for the chart) from PyPI into a throwaway venv,
# builds the Rust side in release mode, runs both sides alternately on the same workloads,
# prints a markdown table and writes it, with the machine description, to BENCHMARKS.md, and
# the per-task cost chart to bench/per-task-cost.svg.
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
"$work/venv/bin/pip" install -q --disable-pip-version-check graflow==0.2.0 redis matplotlib
echo "== graflow-bench (release)" >&2
cargo build -q --release -p graflow-bench
if [ "$DOCKER" = 1 ]; then
  bash graflow-docker/scripts/setup.sh >&2
fi

# Every row but the run history's runs without a run store, as before the store existed.
ours() { echo "   graflow-rs $*" >&2; GRAFLOW_STORE=off ./target/release/graflow-bench "$@" >>"$results"; }
# The run history's rows: each process its own SQLite store in a temporary directory.
ours_stored() { echo "   graflow-rs $*" >&2; GRAFLOW_HOME="$work/home" ./target/release/graflow-bench "$@" >>"$results"; }
# A failed Graflow run is reported and leaves its row short; it does not end the benchmark.
theirs() {
  echo "   graflow-py $*" >&2
  "$work/venv/bin/python" bench/graflow_py.py "$@" >>"$results" || echo "   (Graflow 0.2 failed: $*)" >&2
}

echo "== chain and fan-out, alternating (Graflow 0.2 in each of its forms)" >&2
for n in 100 1000 10000; do
  for _ in $(seq "$REPS"); do ours chain "$n"; theirs chain "$n" pairwise; theirs chain "$n" reduce; done
done
for rep in $(seq "$REPS"); do
  ours chain 100000
  # Graflow 0.2 needs up to minutes for this one: once, in its fast form (the reduce form is
  # quadratic to build).
  if [ "$rep" = 1 ]; then theirs chain 100000 pairwise; fi
done
for n in 10 100 1000 10000; do
  for _ in $(seq "$REPS"); do ours fanout "$n"; theirs fanout "$n" direct; theirs fanout "$n" threads; done
done
for rep in $(seq "$REPS"); do
  ours fanout 100000
  if [ "$rep" = 1 ]; then theirs fanout 100000 direct; fi
done
echo "== scaling: a million tasks" >&2
for _ in $(seq 3); do ours chain 1000000; ours fanout 1000000; done
echo "== parallel efficiency: 64 CPU-bound tasks of about 10 ms" >&2
for _ in $(seq "$REPS"); do ours parallel 64; theirs parallel 64 threads; theirs parallel 64 direct; done
echo "== checkpoints (10k chain: one when the run ends, one after every task)" >&2
echo "== run history: the 10k chain with a SQLite store and without, alternating; reading 50 of 10,000 runs" >&2
for _ in $(seq "$REPS"); do ours_stored chain-store 10000; ours_stored chain-nostore 10000; done
ours_stored store-read 10000
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

# The raw results outlive the run, for report.py alone: python bench/report.py FILE MACHINE --svg PATH.
cp "$results" "${TMPDIR:-/tmp}/graflow-bench-results.jsonl"
cp "$machine" "${TMPDIR:-/tmp}/graflow-bench-machine.txt"
"$work/venv/bin/python" bench/report.py "$results" "$machine" --svg bench/per-task-cost.svg | tee BENCHMARKS.md
