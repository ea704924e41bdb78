#!/usr/bin/env bash
# CPU time and context switches per quick operation, by thread: the churn's writes (50 a
# second for SECONDS_PER_ROUND) on an otherwise idle flagd-server, or with LOAD=1 on one
# saturated by wrk's single-flag load as in run.sh, measured from
# /proc/PID/task/*/schedstat before and after. Kernel time counts (unlike callgrind's
# instruction counts), which is where most of a write's cost goes. Method and figures:
# benches/README.md ("Writes under load").
#
#   CARGO_TARGET_DIR=/work/target-perf bash benches/load/write_cost.sh
#
# Knobs (environment): ROUNDS (3), SECONDS_PER_ROUND (10), RATE (writes/s, 50),
# LOAD (0; 1: wrk single-flag load through every round, 64 connections; the serving
# thread then runs all the time, so only the control plane's and SQLite's threads count),
# SERVER_CPUS (0), CLIENT_CPUS (1), as in run.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/benches/load"
ROUNDS=${ROUNDS:-3}
SECONDS_PER_ROUND=${SECONDS_PER_ROUND:-10}
RATE=${RATE:-50}
LOAD=${LOAD:-0}
SERVER_CPUS=${SERVER_CPUS-0}
CLIENT_CPUS=${CLIENT_CPUS-1}

SCRIPT=write_cost.sh
TOOLS="curl python3 taskset"
if ((LOAD)); then TOOLS+=" wrk"; fi
# shellcheck source=benches/load/common.sh
source "$HERE/common.sh"

start_flagd 10 "${SERVER_PIN[@]}"
OFREP_TOKEN=$("$BIN/ofrep_churn" seed --addr "$FLAGD" --admin-token "$ADMIN" 2>/dev/null)
export OFREP_TOKEN

threads() { # threads FILE: "tid name run_ns switches" for every thread of the server
  local task run wait switches
  for task in /proc/"$FLAGD_PID"/task/*; do
    read -r run wait switches <"$task/schedstat"
    : "$wait"
    echo "${task##*/} $(tr -d ' ' <"$task/comm") $run $switches"
  done | sort >"$1"
}

load() { # load: wrk's single-flag load from a second before the writes until a second after
  wrk_load $((SECONDS_PER_ROUND + 2)) "http://$FLAGD$SINGLE_PATH" >"$WORK/wrk.out" &
  LOAD_PID=$!
  PIDS+=("$LOAD_PID")
  sleep 1
}

echo "== $ROUNDS rounds of $SECONDS_PER_ROUND s at $RATE quick operations/s, server on CPUs ${SERVER_CPUS:-any}$(
  ((LOAD)) && echo ", under wrk's single-flag load")"
for round in $(seq 1 "$ROUNDS"); do
  if ((LOAD)); then load; fi
  threads "$WORK/before"
  "${CLIENT_PIN[@]}" "$BIN/ofrep_churn" churn --addr "$FLAGD" --admin-token "$ADMIN" \
    --rate "$RATE" --seconds "$SECONDS_PER_ROUND" >"$WORK/churn.out"
  threads "$WORK/after"
  writes=$(sed -n 's/^CHURN writes=\([0-9]*\) .*/\1/p' "$WORK/churn.out")
  echo "   round $round: $(sed 's/^CHURN //' "$WORK/churn.out")"
  if ((LOAD)); then
    wait "$LOAD_PID"
    echo "     load: $(sed -n 's/^RESULT .* rps=\([0-9]*\).*/\1 req\/s/p' "$WORK/wrk.out")"
  fi
  python3 - "$WORK/before" "$WORK/after" "$writes" "$LOAD" <<'EOF'
import sys
before = {l.split()[0]: l.split() for l in open(sys.argv[1])}
writes = int(sys.argv[3])
# Under load the serving thread runs whatever the writes do: its time is not theirs.
serving_excluded = sys.argv[4] == "1"
rows, total_us, total_sw = [], 0.0, 0.0
for line in open(sys.argv[2]):
    tid, name, run, switches = line.split()
    if serving_excluded and name.startswith("tokio-rt"):
        continue
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
