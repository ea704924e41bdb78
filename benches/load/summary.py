"""Summarises run.sh's result lines into the table benches/README.md records.

Each flagd scenario is compared with the ceiling run of the same round (same endpoint),
because the shared host drifts between rounds far more than within one.
"""

import statistics
import sys

# scenario -> (ceiling it is compared with, min req/s ratio, max p99 ratio)
TARGETS = {
    "flagd_single": ("ceiling_single", 0.85, 1.25),
    "flagd_bulk": ("ceiling_bulk", 0.6, 1.25),
    "churn_single": ("ceiling_single", 0.85, 1.25),
    "churn_bulk": ("ceiling_bulk", 0.6, 1.25),
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


def main(path):
    runs = parse(path)
    rounds = sorted({r for r, _ in runs})
    med = statistics.median
    print("| scenario | req/s | ratio to ceiling | p50 | p99 | ceiling p50 / p99 | p99 ratio | errors | met? |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for scenario, (ceiling, min_ratio, max_p99) in TARGETS.items():
        pairs = [(runs[(r, scenario)], runs[(r, ceiling)]) for r in rounds if (r, scenario) in runs]
        if not pairs:
            continue
        ratios = [float(s["rps"]) / float(c["rps"]) for s, c in pairs]
        p99_ratios = [int(s["p99_us"]) / int(c["p99_us"]) for s, c in pairs]
        failed = sum(errors(s) for s, _ in pairs)
        writes = sum(int(s.get("writes", 0)) for s, _ in pairs)
        failed_writes = sum(int(s.get("failed", 0)) for s, _ in pairs)
        ratio, p99_ratio = med(ratios), med(p99_ratios)
        misses = []
        if ratio < min_ratio:
            misses.append(f"req/s < {min_ratio}")
        if p99_ratio > max_p99:
            misses.append(f"p99 > {max_p99}x")
        if failed or failed_writes:
            misses.append("failures")
        error_text = str(failed)
        if "writes" in pairs[0][0]:
            late = sum(int(s["late"]) for s, _ in pairs)
            rate = med(float(s["rate"]) for s, _ in pairs)
            write_p99 = max(float(s["p99_ms"]) for s, _ in pairs)
            error_text += (
                f" (writes: {writes} at {rate:.1f}/s, {failed_writes} failed, {late} late,"
                f" write latency p99 up to {write_p99:.0f} ms)"
            )
        print(
            f"| {scenario} | {med(float(s['rps']) for s, _ in pairs):,.0f} "
            f"| {ratio:.3f} ({min(ratios):.3f}–{max(ratios):.3f}) "
            f"| {ms(med(int(s['p50_us']) for s, _ in pairs))} | {ms(med(int(s['p99_us']) for s, _ in pairs))} "
            f"| {ms(med(int(c['p50_us']) for _, c in pairs))} / {ms(med(int(c['p99_us']) for _, c in pairs))} "
            f"| {p99_ratio:.2f} ({min(p99_ratios):.2f}–{max(p99_ratios):.2f}) "
            f"| {error_text} | {'met' if not misses else 'not met: ' + ', '.join(misses)} |"
        )
    print()
    print("Ceiling runs (req/s per round):")
    for ceiling in ("ceiling_single", "ceiling_bulk"):
        values = [f"{float(runs[(r, ceiling)]['rps']):,.0f}" for r in rounds if (r, ceiling) in runs]
        print(f"  {ceiling}: {', '.join(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
