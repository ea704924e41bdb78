#!/usr/bin/env bash
# CPU time and context switches per quick operation, by thread, on an otherwise idle
# flagd-server: the churn's writes alone (50 a second for SECONDS), measured from
# /proc/PID/task/*/schedstat before and after. Kernel time counts (unlike callgrind's
# instruction counts), which is where most of a write's cost goes. Method and figures:
# benches/README.md ("Writes under load").
#
#   CARGO_TARGET_DIR=/work/target-perf bash benches/load/write_cost.sh
#
# Knobs (environment): ROUNDS (3), SECONDS_PER_ROUND (10), RATE (writes/s, 50),
# SERVER_CPUS (0), CLIENT_CPUS (1), as in run.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/benches/load"
ROUNDS=${ROUNDS:-3}
SECONDS_PER_ROUND=${SECONDS_PER_ROUND:-10}
RATE=${RATE:-50}
SERVER_CPUS=${SERVER_CPUS-0}
CLIENT_CPUS=${CLIENT_CPUS-1}

SCRIPT=write_cost.sh
TOOLS="curl python3 taskset"
# shellcheck source=benches/load/common.sh
source "$HERE/common.sh"

start_flagd 10 "${SERVER_PIN[@]}"
"$BIN/ofrep_churn" seed --addr "$FLAGD" --admin-token "$ADMIN" >/dev/null 2>&1

threads() { # threads FILE: "tid name run_ns switches" for every thread of the server
  local task run wait switches
  for task in /proc/"$FLAGD_PID"/task/*; do
    read -r run wait switches <"$task/schedstat"
    : "$wait"
    echo "${task##*/} $(tr -d ' ' <"$task/comm") $run $switches"
  done | sort >"$1"
}

echo "== $ROUNDS rounds of $SECONDS_PER_ROUND s at $RATE quick operations/s, server on CPUs ${SERVER_CPUS:-any}"
for round in $(seq 1 "$ROUNDS"); do
  threads "$WORK/before"
  "${CLIENT_PIN[@]}" "$BIN/ofrep_churn" churn --addr "$FLAGD" --admin-token "$ADMIN" \
    --rate "$RATE" --seconds "$SECONDS_PER_ROUND" >"$WORK/churn.out"
  threads "$WORK/after"
  writes=$(sed -n 's/^CHURN writes=\([0-9]*\) .*/\1/p' "$WORK/churn.out")
  echo "   round $round: $(sed 's/^CHURN //' "$WORK/churn.out")"
  python3 - "$WORK/before" "$WORK/after" "$writes" <<'EOF'
import sys
before = {l.split()[0]: l.split() for l in open(sys.argv[1])}
writes = int(sys.argv[3])
rows, total_us, total_sw = [], 0.0, 0.0
for line in open(sys.argv[2]):
    tid, name, run, switches = line.split()
    _, _, run0, sw0 = before.get(tid, (tid, name, "0", "0"))
    us = (int(run) - int(run0)) / 1000 / writes
    sw = (int(switches) - int(sw0)) / writes
    if us >= 1:
        rows.append(f"{name} {us:.0f} us, {sw:.1f} switches")
    total_us += us
    total_sw += sw
print(f"     per write: {total_us:.0f} us of CPU, {total_sw:.1f} context switches ({'; '.join(rows)})")
EOF
done
