"""Turns the JSON lines of bench/compare.sh into markdown: medians per side, workload and N,
ratios measured in the same run, and the targets checked. Standard library only.

    python3 report.py RESULTS.jsonl MACHINE.txt
"""

import json
import statistics
import sys
from collections import defaultdict


def load(path):
    samples = defaultdict(list)
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                row = json.loads(line)
                samples[(row["side"], row["workload"], row["n"])].append(row)
    return samples


def median(rows, key):
    values = [r[key] for r in rows if key in r]
    return statistics.median(values) if values else None


def fmt_time(seconds):
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def fmt_us(us):
    if us is None:
        return "-"
    return f"{us:.3f} µs" if us < 10 else f"{us:.1f} µs"


def main():
    samples = load(sys.argv[1])
    machine = open(sys.argv[2]).read().strip()
    out = []
    checks = []
    get = lambda side, workload, n: samples.get((side, workload, n), [])

    out.append("## Chain and fan-out (build + run, medians)\n")
    out.append("| workload | N | runs (rs/py) | graflow-rs total | per task | Graflow 0.2 total | per task | Graflow 0.2 / graflow-rs | run only: Graflow 0.2 / graflow-rs |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    speedups = []
    for workload in ("chain", "fanout"):
        ns = sorted({n for (side, w, n) in samples if w == workload})
        for n in ns:
            rs, py = get("graflow-rs", workload, n), get("graflow-py", workload, n)
            rs_t, py_t = median(rs, "seconds"), median(py, "seconds")
            rs_run, py_run = median(rs, "run_seconds"), median(py, "run_seconds")
            ratio = f"{py_t / rs_t:,.0f}×" if rs_t and py_t else "-"
            run_ratio = f"{py_run / rs_run:,.0f}×" if rs_run and py_run else "-"
            if rs_t and py_t:
                speedups.append((f"{workload} {n}", py_t / rs_t))
            label = "linear chain" if workload == "chain" else "fan-out / fan-in"
            out.append(
                f"| {label} | {n:,} | {len(rs)}/{len(py)} | {fmt_time(rs_t)} | {fmt_us(median(rs, 'per_item_us'))} "
                f"| {fmt_time(py_t)} | {fmt_us(median(py, 'per_item_us'))} | {ratio} | {run_ratio} |"
            )

    rs_chain = get("graflow-rs", "chain", 100_000)
    rs_call = median(get("graflow-rs", "call", 1_000_000), "per_item_us")
    py_call = median(get("graflow-py", "call", 1_000_000), "per_item_us")
    rs_handler = median(get("graflow-rs", "handler", 1_000_000), "per_item_us")
    py_handler = median(get("graflow-py", "handler", 10_000), "per_item_us")
    out.append("\n## Direct-handler overhead per task, against a plain function call\n")
    out.append("The direct handler alone, called in a loop on one task's context (run the body, hand back its result): graflow-rs through `DirectHandler::execute_task`, awaited as a custom handler wrapping it would (a boxed future each; the scheduler itself runs a short body inline, without one), Graflow 0.2 through `DirectTaskHandler.execute_task`; against calling the plain function.\n")
    out.append("| side | plain call | direct handler | overhead |")
    out.append("|---|---|---|---|")
    if rs_call is not None and rs_handler is not None:
        out.append(f"| graflow-rs | {fmt_us(rs_call)} | {fmt_us(rs_handler)} | {fmt_us(rs_handler - rs_call)} |")
    if py_call is not None and py_handler is not None:
        out.append(f"| Graflow 0.2 | {fmt_us(py_call)} | {fmt_us(py_handler)} | {fmt_us(py_handler - py_call)} |")
    if None not in (rs_call, rs_handler, py_call, py_handler):
        ratio = (py_handler - py_call) / (rs_handler - rs_call)
        speedups.append(("direct-handler overhead", ratio))
        out.append(f"\nGraflow 0.2's overhead is {ratio:,.0f}× ours.")

    out.append("\n## Peak memory (max RSS of the process, medians)\n")
    out.append("| workload | graflow-rs | Graflow 0.2 | Graflow 0.2 / graflow-rs |")
    out.append("|---|---|---|---|")
    for workload, n in (("chain", 100_000), ("fanout", 10_000)):
        rs = median(get("graflow-rs", workload, n), "max_rss_kb")
        py = median(get("graflow-py", workload, n), "max_rss_kb")
        if rs is None:
            continue
        ratio = f"{py / rs:.1f}×" if py else "-"
        out.append(f"| {workload} {n:,} | {rs / 1024:.1f} MiB | {py / 1024:.1f} MiB | {ratio} |" if py else f"| {workload} {n:,} | {rs / 1024:.1f} MiB | - | - |")

    docker = get("graflow-rs", "docker", 1)
    docker8 = get("graflow-rs", "docker8", 1)
    process = get("graflow-rs", "process", 1)
    if docker or docker8 or process:
        out.append("\n## Out of process (graflow-rs against the docker CLI, alternated in one run)\n")
        out.append("| workload | runs | graflow-rs (median) | `docker run --rm IMAGE true` (median) | ratio |")
        out.append("|---|---|---|---|---|")
        for label, rows in (("1 trivial docker task", docker), ("8 docker tasks in a parallel group / 8 concurrent `docker run`", docker8)):
            for r in rows:
                out.append(f"| {label} | {r['runs']} | {fmt_time(r['seconds'])} | {fmt_time(r['cli_seconds'])} | {r['ratio']:.3f} |")
                if label.startswith("1 "):
                    checks.append(("docker task ≤ 1.15 × docker run --rm", r["ratio"] <= 1.15, f"{r['ratio']:.3f}×"))
        for r in process:
            out.append(f"| 1 trivial task on the \"process\" handler | {r['runs']} | {fmt_time(r['seconds'])} | - | - |")
            checks.append(("process handler ≤ 5 ms per task", r["seconds"] <= 0.005, fmt_time(r["seconds"])))

    warm_process = get("graflow-rs", "warm-process", 1)
    warm_docker = get("graflow-rs", "warm-docker", 1)
    docker_group = [r for n in sorted({n for (side, w, n) in samples if w == "docker-group"}) for r in get("graflow-rs", "docker-group", n)]
    if warm_process or warm_docker or docker_group:
        out.append("\n## Warm runners (`reuse = true`: one runner serves task after task)\n")
        out.append("One-task workflows, timed from `execute` to the report; medians of the runs in one process. Warm docker runs alternate with a fresh container and `docker run --rm IMAGE true`; warm process runs go back to back, then the fresh-child runs (alternating single runs would time a warm runner woken after every cold start).\n")
        out.append("| workload | runs | warm | fresh runner (the default) | `docker run --rm` | warm / fresh | warm / `docker run` |")
        out.append("|---|---|---|---|---|---|---|")
        for r in warm_process:
            out.append(f"| 1 trivial task, \"process\" | {r['runs']} | {fmt_time(r['seconds'])} | {fmt_time(r['cold_seconds'])} | - | {r['ratio']:.4f} | - |")
            out.append(f"| per task in a chain of 1,000, \"process\" | 1 | {fmt_time(r['chain_per_task_seconds'])} | - | - | - | - |")
            checks.append(("a warm process task ≤ 100 µs", r["seconds"] <= 100e-6, fmt_time(r["seconds"])))
        for r in warm_docker:
            out.append(f"| 1 trivial task, \"docker\" | {r['runs']} | {fmt_time(r['seconds'])} | {fmt_time(r['cold_seconds'])} | {fmt_time(r['cli_seconds'])} | {r['cold_ratio']:.4f} | {r['ratio']:.4f} |")
            checks.append(("a warm docker task ≤ 15 ms", r["seconds"] <= 0.015, fmt_time(r["seconds"])))
            checks.append(("a warm docker task ≤ 0.05 × docker run --rm", r["ratio"] <= 0.05, f"{r['ratio']:.4f}×"))
        for r in docker_group:
            n = r["n"]
            out.append(f"\n{n} docker tasks in one parallel group: fresh containers (16 at once) {fmt_time(r['cold_seconds'])}; on a pool of {r['pool']} warm containers started by the run itself {fmt_time(r['seconds'])} ({r['ratio']:.3f}× the fresh time); the same group again on the now warm pool {fmt_time(r['warm_again_seconds'])} ({r['again_ratio']:.4f}×).")
            checks.append((f"{n} docker tasks, pool of {r['pool']}, ≤ 0.1 × fresh containers", r["ratio"] <= 0.1, f"{r['ratio']:.3f}× (pool started in the run)"))

    ck_end = get("graflow-rs", "checkpoint_end", 10_000)
    ck_fast = get("graflow-rs", "checkpoint_every_fast", 10_000)
    ck_every = get("graflow-rs", "checkpoint_every", 10_000)
    if ck_end or ck_every:
        plain = median(get("graflow-rs", "chain", 10_000), "per_item_us")
        out.append("\n## Checkpoints (a chain of 10,000 tasks)\n")
        out.append("`RunOptions::checkpoint(path)`: one checkpoint when the run ends, against one after every task (`checkpoint_every(1)`), durable (file and directory synced) and not (`checkpoint_durable(false)`). A checkpoint holds the whole run state (about 240 KB here), so one after every task costs in proportion to the run's size; total time per task, build included.\n")
        out.append("| checkpoints | runs | per task (median) | checkpoints written | file |")
        out.append("|---|---|---|---|---|")
        if plain:
            out.append(f"| none (the plain chain above) | {len(get('graflow-rs', 'chain', 10_000))} | {fmt_us(plain)} | 0 | - |")
        for label, rows in (("one, when the run ends", ck_end), ("after every task, not synced", ck_fast), ("after every task, synced", ck_every)):
            if rows:
                out.append(f"| {label} | {len(rows)} | {fmt_us(median(rows, 'per_item_us'))} | {rows[0]['checkpoints']:,} | {rows[0]['file_bytes'] / 1024:,.0f} KiB |")

    payload_rows = [(h, mb, get("graflow-rs", f"payload-{h}", mb)) for h in ("process", "docker") for mb in (50, 500)]
    payload_rows = [(h, mb, rows) for h, mb, rows in payload_rows if rows]
    if payload_rows:
        out.append("\n## Large results through the process boundary\n")
        out.append("One task returning a `Vec<u8>` of that size; time from the start of the run to its report, and the engine's peak RSS over its baseline (after a 1 MB warm-up), as a multiple of the payload. Docker rows also time the docker CLI streaming the same number of bytes out of a container (`docker run --rm IMAGE head -c N /dev/zero`), the daemon's own speed.\n")
        out.append("| handler | result | runs | time (median) | extra peak RSS / payload (max) | docker CLI, same bytes (median) |")
        out.append("|---|---|---|---|---|---|")
        for h, mb, rows in payload_rows:
            t = median(rows, "seconds")
            worst = max(r["extra_rss_ratio"] for r in rows)
            cli = median(rows, "cli_seconds") if all("cli_seconds" in r for r in rows) else None
            out.append(f"| {h} | {mb} MiB | {len(rows)} | {fmt_time(t)} | {worst:.2f}× | {fmt_time(cli) if cli else '-'} |")
            checks.append((f"{h}: engine peak RSS ≤ 1.2 × a {mb} MiB result", worst <= 1.2, f"{worst:.2f}×"))
            if h == "process" and mb == 50:
                checks.append(("a 50 MiB result through \"process\" ≤ 0.3 s", t <= 0.3, fmt_time(t)))

    redis_rows = [(n, w) for n in (100, 1000, 10_000) for w in (1, 2)]
    redis_rs = {(n, w): [r for r in get("graflow-rs", "redis", n) if r.get("workers") == w] for n, w in redis_rows}
    redis_py = {(n, w): [r for r in get("graflow-py", "redis", n) if r.get("workers") == w] for n, w in redis_rows}
    if any(redis_rs.values()):
        out.append("\n## Remote workers on Redis (the same `redis-server`, alternated in one run)\n")
        out.append("`src >> (p0 | ... | pN-1) >> sink` with the N members on Redis workers: ours (the benchmark program in worker mode, `--graflow-worker-concurrency 16`, Redis Streams) against Graflow 0.2's (`python -m graflow.worker.main --max-concurrent-tasks 16`, its Redis list queue and Redis channel). Total time of the run (build included), medians.\n")
        out.append("| N | workers | runs (rs/py) | graflow-rs total | per task | Graflow 0.2 total | per task | Graflow 0.2 / graflow-rs |")
        out.append("|---|---|---|---|---|---|---|---|")
        for n, w in redis_rows:
            rs, py = redis_rs[(n, w)], redis_py[(n, w)]
            if not rs:
                continue
            rs_t, py_t = median(rs, "seconds"), median(py, "seconds")
            ratio = f"{py_t / rs_t:,.1f}×" if py_t else "-"
            failed = [r for r in get("graflow-py", "redis-failed", n) if r.get("workers") == w]
            py_cell = fmt_time(py_t)
            if failed:
                py_cell += f" (failed {len(failed)} of {len(failed) + len(py)} runs: {failed[0]['error']})"
            out.append(f"| {n:,} | {w} | {len(rs)}/{len(py)} | {fmt_time(rs_t)} | {fmt_us(rs_t * 1e6 / n)} | {py_cell} | {fmt_us(py_t * 1e6 / n) if py_t else '-'} | {ratio} |")
            if w == 2 and n >= 1000:
                checks.append((f"redis fan-out of {n:,} on 2 workers ≤ 100 µs per task", rs_t * 1e6 / n <= 100, fmt_us(rs_t * 1e6 / n)))
                if py_t:
                    checks.append((f"redis fan-out of {n:,} on 2 workers ≥ 30× Graflow 0.2", py_t / rs_t >= 30, f"{py_t / rs_t:,.1f}×"))
        rtt = get("graflow-rs", "redis-rtt", 1)
        kill = get("graflow-rs", "redis-kill", 1)
        for r in rtt:
            out.append(f"\nOne remote task's round trip (a one-task workflow on an idle worker, {r['runs']} runs): median {fmt_time(r['seconds'])}.")
            checks.append(("one remote task's round trip ≤ 1 ms", r["seconds"] <= 0.001, fmt_time(r["seconds"])))
        for r in kill:
            out.append(f"\nA worker SIGKILLed while it holds 300 ms tasks (lease {r['lease_seconds']} s, {r['runs']} runs): its tasks finished on the other worker {fmt_time(r['seconds'])} after the kill (median), {fmt_time(r['over_lease_seconds'])} over the lease, the 300 ms of the task included.")
            checks.append(("a killed worker's tasks finish within the lease + 1 s", r["over_lease_seconds"] <= 1.0, f"lease + {fmt_time(r['over_lease_seconds'])}"))

    chain100k = median(rs_chain, "per_item_us") if rs_chain else None
    chain10k = median(get("graflow-rs", "chain", 10_000), "seconds")
    fan10k = median(get("graflow-rs", "fanout", 10_000), "per_item_us")
    if chain100k is not None:
        checks.insert(0, ("chain ≤ 0.5 µs per task at 100k", chain100k <= 0.5, fmt_us(chain100k)))
    if chain10k and rs_chain:
        growth = median(rs_chain, "seconds") / chain10k
        checks.insert(1, ("100k chain ≤ 12 × the 10k chain (linear)", growth <= 12, f"{growth:.1f}×"))
    if fan10k is not None:
        checks.insert(2, ("fan-out ≤ 2 µs per member at 10k", fan10k <= 2.0, fmt_us(fan10k)))
    if speedups:
        worst = min(speedups, key=lambda s: s[1])
        checks.insert(3, ("≥ 100× faster than Graflow 0.2 on every row both run", worst[1] >= 100, f"slowest row: {worst[0]}, {worst[1]:,.0f}×"))

    print("# Benchmarks: graflow-rs against Graflow 0.2 (Python), the docker CLI and Graflow's Redis workers\n")
    print("Produced by `bench/compare.sh`; every ratio compares medians measured in the same run, both sides alternating.\n")
    print("## Machine\n")
    print("```text\n" + machine + "\n```\n")
    print("## Targets\n")
    print("| target | met | measured |")
    print("|---|---|---|")
    for name, ok, value in checks:
        print(f"| {name} | {'yes' if ok else '**no**'} | {value} |")
    print()
    print("\n".join(out))
    print(
        "\n## Method\n\n"
        "* Each measurement is a fresh process of `target/release/graflow-bench` (Rust) or "
        "`bench/graflow_py.py` (Graflow 0.2.0 from PyPI in a throwaway venv), the two sides "
        "alternating; a row's figure is the median of its runs.\n"
        "* *Total* is building the graph plus running it (validation included); *run only* "
        "is the `execute` call. The Rust side runs on a Tokio runtime created beforehand, "
        "the Python side as `workflow.execute(\"t0\")`. Each workload checks its result.\n"
        "* Graflow 0.2's 100k chain is run once (it takes minutes).\n"
        "* Docker rows: the same image, sequential runs, our task against `docker run --rm "
        "IMAGE true`, alternated within one process; medians."
    )


if __name__ == "__main__":
    main()
