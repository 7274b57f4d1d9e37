"""The Python side of bench/compare.sh: Graflow 0.2 on the same workloads, written as an
ordinary Graflow user would (@task functions, `with workflow(...)`, `>>`, `parallel`,
`workflow.execute("t0")`). Prints one JSON line per measurement, like graflow-bench.

    python graflow_py.py chain N | fanout N | call N | handler N | redis N WORKERS URL [PREFIX]
"""

import functools
import json
import logging
import resource
import sys
import time

logging.disable(logging.CRITICAL)

from graflow import parallel, task, workflow  # noqa: E402


def emit(workload, n, seconds, **extra):
    line = {
        "side": "graflow-py",
        "workload": workload,
        "n": n,
        "seconds": seconds,
        "per_item_us": seconds * 1e6 / max(n, 1),
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    line.update(extra)
    print(json.dumps(line), flush=True)


def make_step(i):
    @task(id=f"t{i}")
    def step():
        return 1

    return step


def chain(n):
    started = time.perf_counter()
    with workflow("chain") as wf:
        steps = [make_step(i) for i in range(n)]
        functools.reduce(lambda a, b: a >> b, steps)
        run_started = time.perf_counter()
        _, context = wf.execute("t0", max_steps=n + 10, ret_context=True)
    finished = time.perf_counter()
    assert context.get_result(f"t{n - 1}") == 1
    emit("chain", n, finished - started, run_seconds=finished - run_started)


def make_member(i):
    @task(id=f"p{i}")
    def member():
        return i

    return member


def fanout(n):
    started = time.perf_counter()
    with workflow("fanout") as wf:

        @task(id="src")
        def src():
            return 0

        members = [make_member(i) for i in range(n)]

        @task(id="sink", inject_context=True)
        def sink(ctx):
            return sum(ctx.get_result(f"p{i}") for i in range(n))

        src >> parallel(*members) >> sink
        run_started = time.perf_counter()
        _, context = wf.execute("src", max_steps=n + 10, ret_context=True)
    finished = time.perf_counter()
    total = context.get_result("sink")
    assert total == n * (n - 1) // 2, f"sink summed {total}"
    emit("fanout", n, finished - started, run_seconds=finished - run_started)


def redis_fanout(n, workers, url):
    """src >> (p0 | ... | pN-1) on Graflow's Redis workers >> sink: the same shape as `fanout`,
    the group's members run by `python -m graflow.worker.main` processes (started by
    compare.sh on the same redis-server as ours)."""
    from graflow.coordination.coordinator import CoordinationBackend

    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    prefix = sys.argv[5] if len(sys.argv) > 5 else "graflow"
    started = time.perf_counter()
    with workflow("redis_fanout") as wf:

        @task(id="src")
        def src():
            return 0

        members = [make_member(i) for i in range(n)]

        @task(id="sink", inject_context=True)
        def sink(ctx):
            return sum(ctx.get_result(f"p{i}") for i in range(n))

        group = parallel(*members).with_execution(
            backend=CoordinationBackend.REDIS,
            backend_config={"host": host, "port": int(port), "db": 0, "key_prefix": prefix},
        )
        src >> group >> sink
        # Results cross through Redis: the context's channel must be Redis-backed (what
        # wf.execute does, with channel_backend="redis").
        import redis as redis_py
        from graflow.core.context import ExecutionContext
        from graflow.core.engine import WorkflowEngine

        client = redis_py.Redis(host=host, port=int(port), db=0, decode_responses=True)
        context = ExecutionContext.create(
            wf.graph,
            "src",
            max_steps=n + 10,
            channel_backend="redis",
            config={"redis_client": client, "key_prefix": prefix},
        )
        run_started = time.perf_counter()
        WorkflowEngine().execute(context)
    finished = time.perf_counter()
    total = context.get_result("sink")
    assert total == n * (n - 1) // 2, f"sink summed {total}"
    emit("redis", n, finished - started, run_seconds=finished - run_started, workers=workers)


def call(n):
    def step():
        return 1

    started = time.perf_counter()
    total = 0
    for _ in range(n):
        total += step()
    assert total == n
    emit("call", n, time.perf_counter() - started)


def handler(n):
    """DirectTaskHandler.execute_task alone, n times, on a one-task workflow's context."""
    from graflow.core.context import ExecutionContext
    from graflow.core.handlers.direct import DirectTaskHandler

    with workflow("handler") as wf:
        one = make_step(0)
        context = ExecutionContext.create(wf.graph, "t0", max_steps=10)
        direct = DirectTaskHandler()
        # As the engine does before it calls a handler.
        one.set_execution_context(context)
        started = time.perf_counter()
        for _ in range(n):
            direct.execute_task(one, context)
        seconds = time.perf_counter() - started
    assert context.get_result("t0") == 1
    emit("handler", n, seconds)


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "redis":
        # redis N WORKERS URL [PREFIX]: the workers are already running. A failed run is a
        # row too (Graflow's group barrier times out after 30 s).
        try:
            redis_fanout(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        except Exception as error:  # noqa: BLE001
            print(json.dumps({"side": "graflow-py", "workload": "redis-failed", "n": int(sys.argv[2]),
                              "workers": int(sys.argv[3]), "error": str(error)[:200]}), flush=True)
            sys.exit(1)
        sys.exit(0)
    workloads = {"chain": chain, "fanout": fanout, "call": call, "handler": handler}
    if len(sys.argv) != 3 or sys.argv[1] not in workloads:
        sys.exit("usage: graflow_py.py chain|fanout|call|handler N | redis N WORKERS URL [PREFIX]")
    workloads[sys.argv[1]](int(sys.argv[2]))
