"""Summarises run.sh's result lines into the tables benches/README.md records.

Each flagd scenario is compared with the ceiling run of the same round (same endpoint and
driver), because the shared host drifts between rounds far more than within one, and the
figure judged is the median of those per-round ratios: a few rounds hit by the host's
stalls move a p99 several-fold, and the median over many short rounds leaves them out
(benches/README.md, "The method's own spread", shows why the rounds are short and many).
Beside the p99 ratio, "p99 added" is the median of the per-round differences: the server's
own addition to the tail, which the ratio hides on a host whose tail is wide anyway.

The targets are judged on wrk's runs at saturation. With LATENCY_RATE set, a second table
gives the latency probe's runs (one fixed rate offered to every server), for information:
at saturation wrk's latencies are mostly its own queue (connections / throughput), the
probe's are what each server takes per request below its capacity. Unless run.sh ran with
CALIBRATE=0, a last table holds a second ceiling to the flagd targets: how far apart two
identical servers land under the same method.

When the servers and the load generator were pinned to CPUs of their own (run.sh's default),
a table of where the time went closes the summary: the server core's user and kernel time
per request, taken from /proc/stat around each run, and how much of the time the load
generator's core was idle (benches/README.md, "Where flagd-server's time goes", for why
that matters to the ratio).
"""

import os
import statistics
import sys

# scenario -> (ceiling it is compared with, min req/s ratio or None, max p99 ratio or None)
SATURATED = {
    "flagd_single": ("ceiling_single", 0.85, 1.25),
    "flagd_bulk": ("ceiling_bulk", 0.6, 1.25),
    "churn_single": ("ceiling_single", 0.85, 1.25),
    "churn_bulk": ("ceiling_bulk", 0.6, 1.25),
}
# The probe's scenarios: no targets, so nothing is judged.
EQUAL_LOAD = {
    "lat_flagd_single": ("lat_ceiling_single", None, None),
    "lat_flagd_bulk": ("lat_ceiling_bulk", None, None),
    "lat_churn_single": ("lat_ceiling_single", None, None),
    "lat_churn_bulk": ("lat_ceiling_bulk", None, None),
}
# A second ceiling measured as flagd-server is: the method's own spread, to the same targets.
TWIN = {
    "twin_single": SATURATED["flagd_single"],
    "twin_bulk": SATURATED["flagd_bulk"],
}


def parse(path):
    runs = {}
    with open(path) as f:
        for line in f:
            fields = dict(item.split("=", 1) for item in line.split())
            runs[(int(fields["round"]), fields["scenario"])] = fields
    return runs


def ms(us):
    return f"{us / 1000:.2f} ms"


def errors(run):
    return sum(int(run[k]) for k in ("non2xx", "connect", "read", "write", "timeout"))


def verdict(misses, min_ratio, max_p99):
    if misses:
        return "not met: " + ", ".join(misses)
    return "met" if min_ratio is not None or max_p99 is not None else "no failures (no target)"


def row(scenario, pairs, min_ratio, max_p99):
    """One table row and whether every target it judges was met."""
    med = statistics.median
    ratios = [float(s["rps"]) / float(c["rps"]) for s, c in pairs]
    p99_ratios = [int(s["p99_us"]) / int(c["p99_us"]) for s, c in pairs]
    # The same comparison as a difference: what the server adds to the tail, which unlike
    # the ratio does not shrink when the host's own tail (the ceiling's p99) is wide.
    p99_added = med(int(s["p99_us"]) - int(c["p99_us"]) for s, c in pairs)
    failed = sum(errors(s) for s, _ in pairs)
    failed_writes = sum(int(s.get("failed", 0)) for s, _ in pairs)
    ratio, p99_ratio = med(ratios), med(p99_ratios)
    misses = []
    if min_ratio is not None and ratio < min_ratio:
        misses.append(f"req/s < {min_ratio}")
    if max_p99 is not None and p99_ratio > max_p99:
        misses.append(f"p99 > {max_p99}x")
    if failed or failed_writes:
        misses.append("failures")
    error_text = str(failed)
    if "writes" in pairs[0][0]:
        writes = sum(int(s["writes"]) for s, _ in pairs)
        late = sum(int(s["late"]) for s, _ in pairs)
        rate = med(float(s["rate"]) for s, _ in pairs)
        write_p99 = max(float(s["p99_ms"]) for s, _ in pairs)
        error_text += (
            f" (writes: {writes} at {rate:.1f}/s, {failed_writes} failed, {late} late,"
            f" write latency p99 up to {write_p99:.0f} ms)"
        )
    return (
        f"| {scenario} | {med(float(s['rps']) for s, _ in pairs):,.0f} "
        f"| {ratio:.3f} ({min(ratios):.3f}–{max(ratios):.3f}) "
        f"| {ms(med(int(s['p50_us']) for s, _ in pairs))} | {ms(med(int(s['p99_us']) for s, _ in pairs))} "
        f"| {ms(med(int(c['p50_us']) for _, c in pairs))} / {ms(med(int(c['p99_us']) for _, c in pairs))} "
        f"| {p99_ratio:.2f} ({min(p99_ratios):.2f}–{max(p99_ratios):.2f}) | {p99_added / 1000:+.2f} ms "
        f"| {error_text} | {verdict(misses, min_ratio, max_p99)} |"
    )


def table(runs, rounds, scenarios):
    lines = []
    for scenario, (ceiling, min_ratio, max_p99) in scenarios.items():
        pairs = [(runs[(r, scenario)], runs[(r, ceiling)]) for r in rounds if (r, scenario) in runs]
        if pairs:
            lines.append(row(scenario, pairs, min_ratio, max_p99))
    return lines


HEADER = [
    "| scenario | req/s | ratio to ceiling | p50 | p99 | ceiling p50 / p99 | p99 ratio | p99 added | errors | met? |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]


# Scenarios whose CPU time is shown, each beside the ceiling it is compared with.
CPU_SCENARIOS = {
    "ceiling_single": None,
    "flagd_single": "ceiling_single",
    "churn_single": "ceiling_single",
    "twin_single": "ceiling_single",
    "ceiling_bulk": None,
    "flagd_bulk": "ceiling_bulk",
    "churn_bulk": "ceiling_bulk",
    "twin_bulk": "ceiling_bulk",
}
# /proc/stat's fields after the CPU's name, in order.
JIFFY_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def cpu_list(text):
    """The CPUs of a taskset list such as `0`, `0,2` or `0-3`."""
    cpus = set()
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def jiffies(run, cpus):
    """The jiffies a run spent on these CPUs, by /proc/stat field, or None if not recorded."""
    total = dict.fromkeys(JIFFY_FIELDS, 0)
    for cpu in cpus:
        spent = run.get(f"cpu{cpu}")
        if spent is None:
            return None
        for name, value in zip(JIFFY_FIELDS, spent.split(",")):
            total[name] += int(value)
    return total


def cpu_use(run, server_cpus, client_cpus):
    """µs of user and of kernel time per request on the server's CPUs, the share of their
    time stolen by the hypervisor, and the share the load generator's CPUs sat idle."""
    server, client = jiffies(run, server_cpus), jiffies(run, client_cpus)
    if server is None or client is None:
        return None
    us_per_jiffy = 1e6 / os.sysconf("SC_CLK_TCK")
    requests = max(int(run["requests"]), 1)
    kernel = server["system"] + server["irq"] + server["softirq"]
    return {
        "user": server["user"] * us_per_jiffy / requests,
        "kernel": kernel * us_per_jiffy / requests,
        "steal": server["steal"] / max(sum(server.values()), 1),
        "client_idle": (client["idle"] + client["iowait"]) / max(sum(client.values()), 1),
    }


def cpu_table(runs, rounds, server_cpus, client_cpus):
    """Where the time went, scenario by scenario: medians over the rounds, and for flagd-server
    (and the calibration) the median per-round ratio of its per-request times to the ceiling's."""
    med = statistics.median
    lines = [
        "| scenario | req/s | server user µs/req | server kernel µs/req | x ceiling (user / kernel) "
        "| steal | load generator idle |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    uses = {key: cpu_use(run, server_cpus, client_cpus) for key, run in runs.items()}
    for scenario, ceiling in CPU_SCENARIOS.items():
        used = [
            (runs[(r, scenario)], uses[(r, scenario)], uses.get((r, ceiling)))
            for r in rounds
            if uses.get((r, scenario))
        ]
        if not used:
            continue
        against = "—"
        bases = [(use, base) for _, use, base in used if base and base["user"] and base["kernel"]]
        if bases:
            user_x = med(use["user"] / base["user"] for use, base in bases)
            kernel_x = med(use["kernel"] / base["kernel"] for use, base in bases)
            against = f"{user_x:.2f} / {kernel_x:.2f}"
        lines.append(
            f"| {scenario} | {med(float(run['rps']) for run, _, _ in used):,.0f} "
            f"| {med(use['user'] for _, use, _ in used):.1f} | {med(use['kernel'] for _, use, _ in used):.1f} "
            f"| {against} | {med(use['steal'] for _, use, _ in used):.1%} "
            f"| {med(use['client_idle'] for _, use, _ in used):.1%} |"
        )
    return lines if len(lines) > 2 else []


def main(path, server_cpus="", client_cpus=""):
    runs = parse(path)
    rounds = sorted({r for r, _ in runs})
    print("\n".join(HEADER + table(runs, rounds, SATURATED)))
    for title, scenarios in (
        ("Latency probe at one fixed rate offered to every server (for information; req/s ratio 1 = rate held):", EQUAL_LOAD),
        ("Calibration: a second ceiling measured as flagd-server is (the method's own spread):", TWIN),
    ):
        lines = table(runs, rounds, scenarios)
        if lines:
            print()
            print(title)
            print("\n".join(HEADER + lines))
    print()
    print("Ceiling runs (req/s over the rounds: min / median / max):")
    for ceiling in ("ceiling_single", "ceiling_bulk"):
        values = [float(runs[(r, ceiling)]["rps"]) for r in rounds if (r, ceiling) in runs]
        if values:
            print(f"  {ceiling}: {min(values):,.0f} / {statistics.median(values):,.0f} / {max(values):,.0f}")
    if server_cpus and client_cpus:
        lines = cpu_table(runs, rounds, cpu_list(server_cpus), cpu_list(client_cpus))
        if lines:
            print()
            print(f"Where the time went (server core: CPUs {server_cpus}; load generator: CPUs {client_cpus};")
            print("kernel = system + irq + softirq; medians over the rounds):")
            print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
