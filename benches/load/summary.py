"""Summarises run.sh's result lines into the tables benches/README.md records.

Each flagd scenario is compared with the ceiling run of the same round (same endpoint and
driver), because the shared host drifts between rounds far more than within one, and the
figure judged is the median of those per-round ratios: a few rounds hit by the host's
stalls move a p99 several-fold, and the median over many short rounds leaves them out
(benches/README.md, "The method's own spread", shows why the rounds are short and many).

The targets are judged on wrk's runs at saturation. With LATENCY_RATE set, a second table
gives the latency probe's runs (one fixed rate offered to every server), for information:
at saturation wrk's latencies are mostly its own queue (connections / throughput), the
probe's are what each server takes per request below its capacity. Unless run.sh ran with
CALIBRATE=0, a last table holds a second ceiling to the flagd targets: how far apart two
identical servers land under the same method.
"""

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
        f"| {p99_ratio:.2f} ({min(p99_ratios):.2f}–{max(p99_ratios):.2f}) "
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
    "| scenario | req/s | ratio to ceiling | p50 | p99 | ceiling p50 / p99 | p99 ratio | errors | met? |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]


def main(path):
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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
