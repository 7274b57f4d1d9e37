#!/usr/bin/env python3
"""Writes the text seeds of the fuzz targets (flags, docker options, Redis entries) under
fuzz/seeds/. The Redis entries carry the invocation and outcome seeds, so write those first
(cargo test -p graflow-protocol --test fuzz_seeds -- --ignored)."""
import os

seeds = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def w(path, data):
    if isinstance(data, str):
        data = data.encode()
    path = os.path.join(seeds, path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def nul(*args):
    return "\0".join(args)


# --graflow-* flags, as the program's arguments (NUL between arguments).
w("program_flags/list", nul("--graflow-list"))
w("program_flags/graph_dot_and_progress", nul("--graflow-graph", "dot", "--graflow-progress", "input.csv"))
w("program_flags/graph_inline", nul("--graflow-graph=mermaid", "--", "--graflow-list"))
w("program_flags/worker", nul("--graflow-worker", "redis://127.0.0.1:6379/0", "--graflow-worker-concurrency", "4"))
w("program_flags/help_and_program_args", nul("-v", "--graflow-help", "--out", "x"))
w("program_flags/unknown", nul("--graflow-nope=1"))
# Worker mode: arguments, then `--env` and NAME=value.
w("worker_flags/url_and_settings", nul(
    "--graflow-worker", "redis://127.0.0.1:6379/0", "--graflow-worker-concurrency", "4",
    "--graflow-worker-queue", "a,b", "--graflow-worker-lease=250ms", "--graflow-worker-max-deliveries", "3",
    "--graflow-worker-name", "w1", "--graflow-worker-prefix", "graflow"))
w("worker_flags/from_env", nul("--graflow-list", "--env", "GRAFLOW_WORKER=redis://localhost/1",
                              "GRAFLOW_WORKER_LEASE=2m", "GRAFLOW_WORKER_QUEUES=x, y"))
w("worker_flags/durations", nul("1h", "0.5s", "30", "1e400s", "-1m"))
# Docker options, a `key=value` line each (lists in [a,b]).
w("docker_options/full", "\n".join([
    "image=python:3.11-slim", "volumes=[/data:/data:ro,/tmp:/scratch]", "env=[HOME,TOKEN=secret]",
    "memory=512m", "cpus=1.5", "gpus=all", "network=bridge", "user=1000:1000", "workdir=/work",
    "pull=always", "auto_remove=true", "labels=[team=data]", "sandbox=true"]))
w("docker_options/bad", "\n".join(["volumes=/:/", "memory=1k", "cpus=0", "gpus=-1", "network=container:",
                                   "workdir=/graflow/x", "nope=1"]))
w("docker_options/lines", "\n".join(["/data:/data:ro", "KEY=value", "512m", "2g", "1000000b", "8589934592g"]))

# Redis entries: RESP replies (first byte even) and NUL-separated fields (first byte odd).
inv = open(os.path.join(seeds, "invocation/with_values"), "rb").read()
out = open(os.path.join(seeds, "outcome/ok_u64"), "rb").read()


def bulk(b):
    if isinstance(b, str):
        b = b.encode()
    return b"$%d\r\n%s\r\n" % (len(b), b)


def arr(items):
    return b"*%d\r\n" % len(items) + b"".join(items)


job = [("v", "1"), ("att", "e1-000000000000002a"), ("reply", "graflow:replies:e1"), ("task", "t"),
       ("timeout_ms", "0"), ("inner", "process"), ("max_out", "1048576"), ("inv", inv)]
reply = [("v", "1"), ("att", "e1-000000000000002a"), ("worker", "w1"), ("delivery", "1"),
         ("logs", "I\tm\thello\n"), ("kind", "outcome"), ("out", out)]
dead = [("v", "1"), ("att", "e1-000000000000002a"), ("worker", "w1"), ("delivery", "4"), ("logs", ""),
        ("kind", "dead"), ("reason", "delivered 4 times")]


def fields(f):
    return arr([x for k, v in f for x in (bulk(k), bulk(v))])


def entry(i, f):
    return arr([bulk("0-%d" % i), fields(f)])


def flat(f):
    return b"\0".join(x if isinstance(x, bytes) else x.encode() for k, v in f for x in (k, v))


w("redis_entries/xreadgroup_job", b"\0" + arr([arr([bulk("graflow:queue:default"), arr([entry(1, job)])])]))
w("redis_entries/xread_replies", b"\0" + arr([arr([bulk("graflow:replies:e1"), arr([entry(1, reply), entry(2, dead)])])]))
w("redis_entries/resp3_map", b"\0" + b"%1\r\n" + bulk("graflow:replies:e1") + arr([entry(3, reply), arr([bulk("0-4"), b"_\r\n"])]))
w("redis_entries/xautoclaim", b"\0" + arr([bulk("0-0"), arr([entry(5, job), arr([bulk("0-6"), b"*-1\r\n"])]), arr([])]))
w("redis_entries/fields_job", b"\1" + flat(job))
w("redis_entries/fields_reply", b"\1" + flat(reply))
