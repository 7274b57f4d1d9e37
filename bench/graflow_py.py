"""The Python side of bench/compare.sh: Graflow 0.2 on the same workloads, written the fastest
way its documentation allows (@task functions, `with workflow(...)`, `>>`, `parallel`,
`workflow.execute("t0")`). Where Graflow offers two ways to write a workload, both are here
and compare.sh measures both: the report compares against the faster one. Prints one JSON line
per measurement, like graflow-bench.

    python graflow_py.py chain N [pairwise|reduce]   t0 >> t1 >> ... (default: pairwise)
    python graflow_py.py fanout N [direct|threads]   src >> parallel(p0..pN-1) >> sink
    python graflow_py.py parallel N [threads|direct] N CPU-bound tasks of about 10 ms each
    python graflow_py.py call N | handler N | redis N WORKERS URL [PREFIX]

Every workload first runs small workflows, untimed (see `warm_up`): Graflow imports much of
itself (pydantic, its HITL modules) on the first `execute`, about 0.2 s that is not the
engine's per-task cost, and a group's first run has one-time costs too. The Rust side warms up
with a small workflow of the measured shape.
"""

import functools
import json
import logging
import os
import resource
import sys
import time

logging.disable(logging.CRITICAL)

from graflow import parallel, task, workflow  # noqa: E402
from graflow.coordination.coordinator import CoordinationBackend  # noqa: E402


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


def warm_up():
    """Untimed, before any workload: a three-task chain (Graflow's first `execute` imports much
    of the package) and a three-member fan-out on each group backend (a group's first run has
    costs of its own). The Rust side warms up with a workflow of the measured shape."""
    with workflow("warm_up") as wf:
        steps = [make_step(i) for i in range(3)]
        steps[0] >> steps[1] >> steps[2]
        _, context = wf.execute("t0", max_steps=10, ret_context=True)
    assert context.get_result("t2") == 1
    for form in ("direct", "threads"):
        fanout(3, form, report=False)


def chain(n, form="pairwise"):
    """`pairwise`: one `a >> b` per pair of neighbours (the fast form). `reduce`: one expression
    `t0 >> t1 >> ... >> tN-1`, as `functools.reduce` or graflow's `chain(*tasks)` build it:
    every `>>` copies the growing SequentialTask, so building it is quadratic in N."""
    started = time.perf_counter()
    with workflow("chain") as wf:
        steps = [make_step(i) for i in range(n)]
        if form == "pairwise":
            for a, b in zip(steps, steps[1:]):
                a >> b
        elif form == "reduce":
            functools.reduce(lambda a, b: a >> b, steps)
        else:
            sys.exit(f"chain: unknown form {form!r} (pairwise or reduce)")
        run_started = time.perf_counter()
        _, context = wf.execute("t0", max_steps=n + 10, ret_context=True)
    finished = time.perf_counter()
    assert context.get_result(f"t{n - 1}") == 1
    emit("chain", n, finished - started, run_seconds=finished - run_started, form=form)


def group_backend(group, form):
    """`threads`: Graflow's default for a parallel group (a thread pool, one thread per core);
    `direct`: the members one after the other on the engine's thread, no pool."""
    if form == "direct":
        return group.with_execution(backend=CoordinationBackend.DIRECT)
    if form == "threads":
        return group.with_execution(backend=CoordinationBackend.THREADING)
    sys.exit(f"unknown group form {form!r} (threads or direct)")


def make_member(i):
    @task(id=f"p{i}")
    def member():
        return i

    return member


def fanout(n, form="direct", report=True):
    started = time.perf_counter()
    with workflow("fanout") as wf:

        @task(id="src")
        def src():
            return 0

        members = [make_member(i) for i in range(n)]

        @task(id="sink", inject_context=True)
        def sink(ctx):
            return sum(ctx.get_result(f"p{i}") for i in range(n))

        src >> group_backend(parallel(*members), form) >> sink
        run_started = time.perf_counter()
        _, context = wf.execute("src", max_steps=n + 10, ret_context=True)
    finished = time.perf_counter()
    total = context.get_result("sink")
    assert total == n * (n - 1) // 2, f"sink summed {total}"
    if report:
        emit("fanout", n, finished - started, run_seconds=finished - run_started, form=form)


MASK = (1 << 64) - 1


def crunch(seed, rounds):
    """The CPU work of one `parallel` task: `rounds` steps of a 64-bit linear congruential
    generator, in pure Python (as a Python task's own code is), the same steps as the Rust side."""
    x = seed
    for _ in range(rounds):
        x = (x * 6364136223846793005 + 1442695040888963407) & MASK
    return x


def calibrate(target_seconds=0.010):
    """Rounds of `crunch` that take about `target_seconds` on this machine (median of 5)."""
    rounds = 20_000
    for _ in range(2):  # a first estimate, then five runs of about the target's length
        estimates = []
        for _ in range(5):
            t = time.perf_counter()
            crunch(1, rounds)
            estimates.append(rounds * target_seconds / (time.perf_counter() - t))
        rounds = max(1, int(sorted(estimates)[2]))
    return rounds


def serial_work(n, rounds):
    t = time.perf_counter()
    expected = 0
    for i in range(n):
        expected ^= crunch(i + 1, rounds)
    return time.perf_counter() - t, expected


def make_cruncher(i, rounds):
    @task(id=f"c{i}")
    def cruncher():
        return crunch(i + 1, rounds)

    return cruncher


def parallel_cpu(n, form="threads"):
    """N CPU-bound tasks of about 10 ms each in one parallel group, against the same work done
    in a plain loop (timed before and after the run, averaged): efficiency is that work over
    (cores x the run's wall time)."""
    cores = len(os.sched_getaffinity(0))
    rounds = calibrate()
    before, expected = serial_work(n, rounds)
    with workflow("parallel") as wf:

        @task(id="src")
        def src():
            return 0

        crunchers = [make_cruncher(i, rounds) for i in range(n)]

        @task(id="sink", inject_context=True)
        def sink(ctx):
            total = 0
            for i in range(n):
                total ^= ctx.get_result(f"c{i}")
            return total

        src >> group_backend(parallel(*crunchers), form) >> sink
        run_started = time.perf_counter()
        _, context = wf.execute("src", max_steps=n + 10, ret_context=True)
        wall = time.perf_counter() - run_started
    assert context.get_result("sink") == expected, "the group's results differ from the loop's"
    after, _ = serial_work(n, rounds)
    work = (before + after) / 2
    emit("parallel", n, wall, run_seconds=wall, form=form, cores=cores, work_seconds=work,
         unit_seconds=work / n, efficiency=work / (cores * wall))


def redis_fanout(n, workers, url):
    """src >> (p0 | ... | pN-1) on Graflow's Redis workers >> sink: the same shape as `fanout`,
    the group's members run by `python -m graflow.worker.main` processes (started by
    compare.sh on the same redis-server as ours)."""
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
            warm_up()
            redis_fanout(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        except Exception as error:  # noqa: BLE001
            print(json.dumps({"side": "graflow-py", "workload": "redis-failed", "n": int(sys.argv[2]),
                              "workers": int(sys.argv[3]), "error": str(error)[:200]}), flush=True)
            sys.exit(1)
        sys.exit(0)
    workloads = {"chain": chain, "fanout": fanout, "parallel": parallel_cpu, "call": call, "handler": handler}
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in workloads:
        sys.exit("usage: graflow_py.py chain|fanout|parallel N [FORM] | call|handler N | redis N WORKERS URL [PREFIX]")
    warm_up()
    workloads[sys.argv[1]](int(sys.argv[2]), *sys.argv[3:])
