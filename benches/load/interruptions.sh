#!/usr/bin/env bash
# What keeps flagd-server's serving thread off its core under wrk's single-flag load, without
# and with the churn's writes: a scheduler trace of the server's CPUs (`perf sched record`)
# over SECONDS_PER_ROUND of each run, summarised by `interruptions.py` (how often the serving
# thread waited while runnable, for how long, and which threads ran meanwhile: the control
# plane, SQLite's thread, or the host's own). Method and figures: benches/README.md
# ("Writes under load", last paragraphs).
#
#   CARGO_TARGET_DIR=/work/target-perf bash benches/load/interruptions.sh
#
# Knobs (environment): ROUNDS (3; each round traces one run without and one with the
# churn), SECONDS_PER_ROUND (3), RATE (writes/s, 50), SERVER_CPUS (0), CLIENT_CPUS (1), as
# in run.sh; KEEP=dir keeps the traces (`perf sched timehist --state` text) there. Needs root
# for the trace (the kernel's scheduler events).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/benches/load"
ROUNDS=${ROUNDS:-3}
SECONDS_PER_ROUND=${SECONDS_PER_ROUND:-3}
RATE=${RATE:-50}
SERVER_CPUS=${SERVER_CPUS-0}
CLIENT_CPUS=${CLIENT_CPUS-1}

SCRIPT=interruptions.sh
TOOLS="curl python3 taskset wrk perf"
# shellcheck source=benches/load/common.sh
source "$HERE/common.sh"

start_flagd 10 "${SERVER_PIN[@]}"
OFREP_TOKEN=$("$BIN/ofrep_churn" seed --addr "$FLAGD" --admin-token "$ADMIN" 2>/dev/null)
export OFREP_TOKEN
URL="http://$FLAGD$SINGLE_PATH"
wrk_load 2 "$URL" >/dev/null

# The CPUs to trace: the server's, or all of them when it is not pinned.
TRACED=(-a)
if [[ -n $SERVER_CPUS ]]; then TRACED=(-C "$SERVER_CPUS"); fi

trace() { # trace SCENARIO ROUND: one traced run under load, with the churn for SCENARIO=churn
  local out="$WORK/$1.$2" waits=()
  wrk_load $((SECONDS_PER_ROUND + 2)) "$URL" >"$out.wrk" &
  waits+=($!)
  if [[ $1 == churn ]]; then
    "${CLIENT_PIN[@]}" "$BIN/ofrep_churn" churn --addr "$FLAGD" --admin-token "$ADMIN" \
      --rate "$RATE" --seconds $((SECONDS_PER_ROUND + 1)) >"$out.churn" &
    waits+=($!)
  fi
  PIDS+=("${waits[@]}")
  sleep 0.5
  perf sched record "${TRACED[@]}" -o "$out.data" -- sleep "$SECONDS_PER_ROUND" >/dev/null 2>&1 ||
    { echo "$SCRIPT: perf sched record failed (it needs root and the kernel's sched tracepoints)" >&2; exit 1; }
  wait "${waits[@]}"
  perf sched timehist --state -i "$out.data" >"$out.txt" 2>/dev/null
  rm -f "$out.data"
}

echo "== $ROUNDS rounds, each tracing ${SECONDS_PER_ROUND} s of single-flag load without and with $RATE writes/s, server on CPUs ${SERVER_CPUS:-any}"
for round in $(seq 1 "$ROUNDS"); do
  for scenario in quiet churn; do
    trace "$scenario" "$round"
    echo "   round $round $scenario: $(sed -n 's/^RESULT .* rps=\([0-9]*\).*/\1 req\/s/p' "$WORK/$scenario.$round.wrk")"
  done
done
python3 "$HERE/interruptions.py" "$FLAGD_PID" "$SECONDS_PER_ROUND" "$WORK"
if [[ -n ${KEEP:-} ]]; then
  mkdir -p "$KEEP" && cp "$WORK"/*.txt "$WORK"/*.wrk "$KEEP"/ && echo "$FLAGD_PID" >"$KEEP/flagd.pid"
fi
