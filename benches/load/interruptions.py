"""Summarises interruptions.sh's scheduler traces: who takes flagd-server's serving core.

Input: the flagd-server pid, the seconds each trace lasted, and the work directory holding
`quiet.N.txt` / `churn.N.txt` (`perf sched timehist --state` of the server's CPUs), with
`.wrk` (ofrep.lua's RESULT line) and, for the churn, `.churn` (ofrep_churn's CHURN line).

Each timehist line is one switch-out: the task, how long it had just run, and its state as it
left the CPU (R: still runnable, so it was preempted; S: it slept, here waiting for the next
requests). A *preemption* is a stretch during which the serving thread could have run but
another task had its CPU: from a switch-out in state R to the serving thread's next start
on that CPU. Every request in flight waits that long, so their length and number per second
are what the churn can add to the latency tail, and what ran during them says whose work it
was. Times the serving thread slept are not waits (it had no request to answer); the
table counts those the control plane or SQLite used, the CPU the writes took without
delaying anyone. A wait may hold several runs of the control plane and SQLite's thread, each
handing a statement or its result to the other: the line after the per-write figures says
how many, which bounds what fewer hand-offs per write could take off a wait.
"""

import collections
import re
import statistics
import sys
from pathlib import Path

LINE = re.compile(
    r"^\s*(?P<t>\d+\.\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<task>.*?)\s+"
    r"(?P<wait>\d+\.\d+)\s+(?P<delay>\d+\.\d+)\s+(?P<run>\d+\.\d+)\s+(?P<state>\S+)\s*$"
)
TASK = re.compile(r"^(?P<name>.*?)(\[(?P<tid>\d+)(/(?P<pid>\d+))?\])?$")
# flagd-server's threads by name (truncated to 15 characters by the kernel).
FLAGD_THREADS = {"tokio-rt-worker": "serving thread", "flagd-control": "control plane", "sqlx-sqlite-wor": "SQLite"}
SLOW_MS = 1.0
PLANE = ("flagd-server: control plane", "flagd-server: SQLite")


def label(task: str, flagd_pid: str) -> str:
    m = TASK.match(task)
    name = m["name"] if m else task
    if m and (m["pid"] or m["tid"]) == flagd_pid:
        return "flagd-server: " + FLAGD_THREADS.get(name, name)
    if name.startswith("kworker/"):
        return "kworker (kernel)"
    return name


def parse(path: Path, flagd_pid: str):
    """The switch-outs of one trace, in time order: (cpu, end ms, run ms, who, state)."""
    rows = []
    for line in path.read_text().splitlines():
        m = LINE.match(line)
        if m:
            end = float(m["t"]) * 1000
            rows.append((m["cpu"], end, float(m["run"]), label(m["task"], flagd_pid), m["state"]))
    return rows


def absences(rows, leaving: str):
    """(length ms, [(who, ms), ...] run meanwhile, in order) of each time the serving thread
    left its CPU in a state starting with `leaving` (R: preempted, S: asleep) until it ran
    there again."""
    open_since, fillers, found = {}, {}, []
    for cpu, end, run, who, state in rows:
        if who == "flagd-server: serving thread":
            if cpu in open_since:
                found.append((end - run - open_since.pop(cpu), fillers.pop(cpu)))
            if state.startswith(leaving):
                open_since[cpu], fillers[cpu] = end, []
        elif cpu in open_since:
            fillers[cpu].append((who, run))
    return found


def by_thread(runs) -> collections.Counter:
    """The ms each thread ran, of a wait's runs."""
    total = collections.Counter()
    for who, ms in runs:
        total[who] += ms
    return total


def plane_runs(runs) -> list[float]:
    """The lengths (ms) of the control plane's and SQLite's runs among a wait's runs."""
    return [ms for who, ms in runs if who in PLANE]


def field(path: Path, prefix: str, key: str) -> float | None:
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith(prefix):
            m = re.search(rf"\b{key}=([0-9.]+)", line)
            return float(m[1]) if m else None
    return None


def pct(values, q):
    return values[min(len(values) - 1, int(len(values) * q))] if values else 0.0


def summarise(traces: list[Path], flagd_pid: str, seconds: float) -> dict:
    """One scenario's traces, added up: CPU, runs and longest run per thread, the serving
    thread's preemptions, and the sleeps of it the control plane used."""
    rows = [parse(t, flagd_pid) for t in traces]
    cpu, runs, longest = collections.Counter(), collections.Counter(), collections.defaultdict(float)
    for _, _, run, who, _ in (row for trace in rows for row in trace):
        cpu[who] += run
        runs[who] += 1
        longest[who] = max(longest[who], run)
    lent = [sum(plane_runs(f)) for trace in rows for _, f in absences(trace, "S")]
    rps = [r for r in (field(t.with_suffix(".wrk"), "RESULT", "rps") for t in traces) if r is not None]
    rate = [r for r in (field(t.with_suffix(".churn"), "CHURN", "rate") for t in traces) if r is not None]
    return dict(
        traced=seconds * len(traces),
        cpu=cpu,
        runs=runs,
        longest=longest,
        waits=sorted((w for trace in rows for w in absences(trace, "R")), key=lambda w: w[0]),
        lent=[ms for ms in lent if ms > 0],
        rps=statistics.median(rps or [0]),
        rate=statistics.median(rate or [0]),
    )


def print_waits(scenarios: dict) -> None:
    print(
        "| scenario | req/s (median) | preempted / s | wait p50 / p99 / max | waiting ms / s | waits over 1 ms / s"
        " | asleep while the control plane ran: / s, its ms / s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, s in scenarios.items():
        lengths, traced = [w for w, _ in s["waits"]], s["traced"]
        slow = sum(1 for w in lengths if w > SLOW_MS)
        print(
            f"| {name} | {s['rps']:,.0f} | {len(lengths) / traced:.0f} | {pct(lengths, 0.5) * 1000:.0f}"
            f" / {pct(lengths, 0.99) * 1000:.0f} / {max(lengths, default=0) * 1000:.0f} µs"
            f" | {sum(lengths) / traced:.1f} | {slow / traced:.1f}"
            f" | {len(s['lent']) / traced:.0f}, {sum(s['lent']) / traced:.1f} |"
        )


def print_threads(quiet: dict, churn: dict) -> None:
    print("Threads on the server's CPUs (ms of CPU per second, runs per second, longest run):")
    print("| thread | quiet | churn |")
    print("| --- | --- | --- |")
    threads = sorted(set(quiet["cpu"]) | set(churn["cpu"]), key=lambda w: -(churn["cpu"][w] + quiet["cpu"][w]))
    for who in threads[:12]:
        cells = [
            f"{s['cpu'][who] / s['traced']:.1f} ms, {s['runs'][who] / s['traced']:.0f}, {s['longest'][who] * 1000:.0f} µs"
            for s in (quiet, churn)
        ]
        print(f"| {who} | {cells[0]} | {cells[1]} |")


def print_per_write(quiet: dict, churn: dict) -> None:
    if not churn["rate"]:
        return
    extra = (len(churn["waits"]) / churn["traced"] - len(quiet["waits"]) / quiet["traced"]) / churn["rate"]
    plane = sum(churn["cpu"][w] - quiet["cpu"][w] for w in PLANE) / churn["traced"] / churn["rate"]
    print(
        f"Per write ({churn['rate']:.1f} writes/s): {extra:.1f} more preemptions of the serving thread,"
        f" {plane * 1000:.0f} µs more CPU on the control plane and SQLite's thread."
    )


def print_chains(churn: dict) -> None:
    chains = [plane_runs(f) for _, f in churn["waits"]]
    chains = [c for c in chains if c]
    if not chains:
        return
    per_wait = sorted(sum(c) for c in chains)
    counts = sorted(len(c) for c in chains)
    single = sorted(ms for c in chains for ms in c)
    print(
        f"Waits (churn) in which the control plane or SQLite ran: {len(chains) / churn['traced']:.0f} / s;"
        f" their CPU per wait p50 / p90 / p99 {pct(per_wait, 0.5) * 1000:.0f} / {pct(per_wait, 0.9) * 1000:.0f}"
        f" / {pct(per_wait, 0.99) * 1000:.0f} µs in {statistics.mean(counts):.1f} runs on average"
        f" (p90 {pct(counts, 0.9)}, max {counts[-1]}); one run p50 / p90 / p99 {pct(single, 0.5) * 1000:.0f}"
        f" / {pct(single, 0.9) * 1000:.0f} / {pct(single, 0.99) * 1000:.0f} µs."
    )


def print_longest(name: str, s: dict) -> None:
    print(f"Longest waits ({name}) and what ran during them:")
    for length, fillers in s["waits"][-5:][::-1]:
        who = ", ".join(f"{w} {ms * 1000:.0f} µs" for w, ms in by_thread(fillers).most_common(4))
        print(f"  {length * 1000:.0f} µs: {who or 'nothing traced'}")


def main() -> None:
    flagd_pid, seconds, work = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
    traces = {name: sorted(work.glob(f"{name}.*.txt")) for name in ("quiet", "churn")}
    scenarios = {name: summarise(found, flagd_pid, seconds) for name, found in traces.items()}
    print(f"== who takes the serving core ({len(traces['quiet'])} traces of {seconds:g} s per scenario)")
    print_waits(scenarios)
    print()
    print_threads(scenarios["quiet"], scenarios["churn"])
    print()
    print_per_write(scenarios["quiet"], scenarios["churn"])
    print_chains(scenarios["churn"])
    for name, s in scenarios.items():
        print()
        print_longest(name, s)


if __name__ == "__main__":
    main()
