"""The Python side of bench/compare.sh: Graflow 0.2 on the same workloads, written as an
ordinary Graflow user would (@task functions, `with workflow(...)`, `>>`, `parallel`,
`workflow.execute("t0")`). Prints one JSON line per measurement, like graflow-bench.

    python graflow_py.py chain N | fanout N | call N | handler N
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
    workloads = {"chain": chain, "fanout": fanout, "call": call, "handler": handler}
    if len(sys.argv) != 3 or sys.argv[1] not in workloads:
        sys.exit("usage: graflow_py.py chain|fanout|call|handler N")
    workloads[sys.argv[1]](int(sys.argv[2]))
