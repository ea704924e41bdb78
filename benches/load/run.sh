#!/usr/bin/env bash
# Server load harness: flagd-server's OFREP endpoints (single flag, bulk of 20) against a
# bare axum ceiling answering the same bytes, under wrk on loopback, then the same while
# ofrep_churn changes flags 50 times a second. Each run's CPU time is read from /proc/stat,
# so the summary can show where the server core's time went. Figures and method:
# benches/README.md.
#
#   CARGO_TARGET_DIR=/work/target-load bash benches/load/run.sh
#
# Knobs (environment): DURATION (s per wrk run, 2), ROUNDS (25), CONNECTIONS (64),
# THREADS (wrk threads, 1), WARMUP (s, 2), CHURN_RATE (changes/s, 50),
# CALIBRATE (1, the default: also measure a second ceiling as flagd-server is measured, to
# show the method's own spread; 0: leave it out),
# LATENCY_RATE (requests/s the latency probe offers every server; default 0: no probe
# runs; see benches/README.md),
# LATENCY_CONNECTIONS (32),
# SERVER_CPUS (taskset list for both servers, 0), CLIENT_CPUS (wrk and the writer, 1).
# Set SERVER_CPUS= and CLIENT_CPUS= empty to run unpinned. flagd-server reads its own
# options from the environment too: FLAGD_CONTROL_NICE=0 runs its control plane (the
# churn's writes) at the serving threads' priority instead of its default 15 levels below
# (see benches/README.md, "Server load").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/benches/load"
DURATION=${DURATION:-2}
ROUNDS=${ROUNDS:-25}
CALIBRATE=${CALIBRATE:-1}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-2}
CHURN_RATE=${CHURN_RATE:-50}
LATENCY_RATE=${LATENCY_RATE:-0}
LATENCY_CONNECTIONS=${LATENCY_CONNECTIONS:-32}
SERVER_CPUS=${SERVER_CPUS-0}
CLIENT_CPUS=${CLIENT_CPUS-1}

SCRIPT=run.sh
TOOLS="wrk curl python3 taskset"
# shellcheck source=benches/load/common.sh
source "$HERE/common.sh"


echo "== start flagd-server on $FLAGD (SQLite in $WORK), CPUs ${SERVER_CPUS:-any}, control plane nice ${FLAGD_CONTROL_NICE:-default}"
start_flagd 10 "${SERVER_PIN[@]}"

echo "== seed 20 flags in production"
TOKEN=$("$BIN/ofrep_churn" seed --addr "$FLAGD" --admin-token "$ADMIN")

capture() { # capture PATH FILE: one real answer, checked, kept for the ceiling
  local code
  code=$(curl -s -o "$2" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d "{\"context\":$OFREP_CONTEXT}" "http://$FLAGD$1")
  [[ $code == 200 ]] || { echo "run.sh: POST $1 answered $code: $(cat "$2")" >&2; return 1; }
}
capture "$SINGLE_PATH" "$WORK/single.json"
capture "$BULK_PATH" "$WORK/bulk.json"
BULK_FLAGS=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["flags"]))' "$WORK/bulk.json")
[[ $BULK_FLAGS == 20 ]] || { echo "run.sh: bulk answer has $BULK_FLAGS flags, expected 20" >&2; exit 1; }
echo "   single: $(cat "$WORK/single.json")"
echo "   bulk: 20 flags, $(wc -c <"$WORK/bulk.json") bytes"

start_ceiling() { # start_ceiling ADDR NAME: an ofrep_ceiling answering the captured bodies
  echo "== start ofrep_ceiling ($2) on $1 with the same bodies, CPUs ${SERVER_CPUS:-any}"
  "${SERVER_PIN[@]}" "$BIN/ofrep_ceiling" --listen "$1" \
    --single-body "$WORK/single.json" --bulk-body "$WORK/bulk.json" >"$WORK/$2.log" 2>&1 </dev/null &
  PIDS+=($!)
  wait_ready "http://$1/" ofrep_ceiling "${PIDS[-1]}" 10
}
start_ceiling "$CEIL" ceiling
if ((CALIBRATE)); then
  TWIN="127.0.0.1:$(free_port)"
  start_ceiling "$TWIN" calibration
fi

RESULTS=$WORK/results.txt
: >"$RESULTS"
export OFREP_TOKEN=$TOKEN

wrk_run() { # wrk_run SECONDS URL → the RESULT line
  local out
  out=$(wrk_load "$1" "$2")
  grep '^RESULT ' <<<"$out" || { echo "run.sh: wrk printed no RESULT line:" >&2; echo "$out" >&2; return 1; }
}

probe_run() { # probe_run SECONDS URL → the RESULT line of ofrep_latency at LATENCY_RATE
  local url=${2#http://}
  "${CLIENT_PIN[@]}" "$BIN/ofrep_latency" --addr "${url%%/*}" --path "/${url#*/}" \
    --rate "$LATENCY_RATE" --connections "$LATENCY_CONNECTIONS" --seconds "$1"
}

cpu_jiffies() { # every CPU's line of /proc/stat: "cpuN user nice system idle iowait irq softirq steal"
  grep '^cpu[0-9]' /proc/stat | cut -d' ' -f1-9
}

cpu_spent() { # cpu_spent BEFORE AFTER (two cpu_jiffies) → "cpuN=user,nice,…,steal …", jiffies in between
  awk 'NR == FNR { for (i = 2; i <= 9; i++) start[$1, i] = $i; next }
    { printf "%s=", $1; for (i = 2; i <= 9; i++) printf "%d%s", $i - start[$1, i], (i < 9 ? "," : " ") }' \
    <(echo "$1") <(echo "$2")
}

measure() { # measure ROUND SCENARIO URL [churn]: wrk, or the latency probe for lat_*
  local line churn_pid churn_out=$WORK/churn.out cpu_before
  if [[ ${4:-} == churn ]]; then
    # The writer starts first and outlasts wrk, so every measured moment sees changes.
    "${CLIENT_PIN[@]}" "$BIN/ofrep_churn" churn --addr "$FLAGD" --admin-token "$ADMIN" \
      --rate "$CHURN_RATE" --seconds $((DURATION + 1)) >"$churn_out" 2>"$WORK/churn.err" &
    churn_pid=$!
    PIDS+=("$churn_pid")
    sleep 0.5
  fi
  cpu_before=$(cpu_jiffies)
  if [[ $2 == lat_* ]]; then line=$(probe_run "$DURATION" "$3"); else line=$(wrk_run "$DURATION" "$3"); fi
  line="$line $(cpu_spent "$cpu_before" "$(cpu_jiffies)")"
  if [[ ${4:-} == churn ]]; then
    wait "$churn_pid" || { echo "run.sh: ofrep_churn failed: $(cat "$WORK/churn.err")" >&2; return 1; }
    line="$line $(sed -n 's/^CHURN //p' "$churn_out")"
    [[ -s $WORK/churn.err ]] && sed 's/^/   /' "$WORK/churn.err"
  fi
  echo "round=$1 scenario=$2 ${line#RESULT }" >>"$RESULTS"
  progress "$1" "$2" "$line"
}

progress() { # progress ROUND SCENARIO LINE: one short line per run (the figures are in RESULTS)
  local -A f
  local item
  for item in ${3#RESULT }; do f[${item%%=*}]=${item#*=}; done
  printf '   round %s %-18s %8.0f req/s  p50 %5s us  p99 %6s us%s\n' "$1" "$2" "${f[rps]}" \
    "${f[p50_us]}" "${f[p99_us]}" "${f[writes]:+  writes ${f[ok]}/${f[writes]}}"
}

echo "== warm-up ($WARMUP s per endpoint and server)"
for url in "http://$CEIL$SINGLE_PATH" "http://$FLAGD$SINGLE_PATH" "http://$CEIL$BULK_PATH" "http://$FLAGD$BULK_PATH"; do
  wrk_run "$WARMUP" "$url" >/dev/null
done

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== $ROUNDS rounds: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, wrk and writer on CPUs ${CLIENT_CPUS:-any}"
for round in $(seq 1 "$ROUNDS"); do
  # Each ceiling run sits between the two flagd runs compared with it, so both are one
  # run away from their reference and a drifting host moves neither ratio more than the other.
  # The twin (CALIBRATE=1) runs two after, no nearer its reference than flagd-server.
  measure "$round" flagd_single "http://$FLAGD$SINGLE_PATH"
  measure "$round" ceiling_single "http://$CEIL$SINGLE_PATH"
  measure "$round" churn_single "http://$FLAGD$SINGLE_PATH" churn
  if ((CALIBRATE)); then measure "$round" twin_single "http://$TWIN$SINGLE_PATH"; fi
  measure "$round" flagd_bulk "http://$FLAGD$BULK_PATH"
  measure "$round" ceiling_bulk "http://$CEIL$BULK_PATH"
  measure "$round" churn_bulk "http://$FLAGD$BULK_PATH" churn
  if ((CALIBRATE)); then measure "$round" twin_bulk "http://$TWIN$BULK_PATH"; fi
  if ((LATENCY_RATE > 0)); then
    measure "$round" lat_flagd_single "http://$FLAGD$SINGLE_PATH"
    measure "$round" lat_ceiling_single "http://$CEIL$SINGLE_PATH"
    measure "$round" lat_churn_single "http://$FLAGD$SINGLE_PATH" churn
    measure "$round" lat_flagd_bulk "http://$FLAGD$BULK_PATH"
    measure "$round" lat_ceiling_bulk "http://$CEIL$BULK_PATH"
    measure "$round" lat_churn_bulk "http://$FLAGD$BULK_PATH" churn
  fi
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# Sanity after the churn: the server still answers, and its log has no errors.
capture "$SINGLE_PATH" "$WORK/after.json"
ERROR_LINES=$(grep -c -E ' (ERROR|WARN) ' "$WORK/flagd.log" || true)
if ((ERROR_LINES > 0)); then
  echo "== flagd-server's warnings and errors (first 10)"
  grep -E ' (ERROR|WARN) ' "$WORK/flagd.log" | head -10 | sed 's/^/   /'
fi

echo "== summary (median over rounds; ratios are computed within each round, then the median)"
echo "   date $(date -u '+%Y-%m-%d %H:%M UTC'), load average before ${LOAD_BEFORE}, after ${LOAD_AFTER}," \
  "flagd-server log: $ERROR_LINES warning/error lines, control plane nice ${FLAGD_CONTROL_NICE:-default}," \
  "servers on CPUs ${SERVER_CPUS:-any}, load generator on CPUs ${CLIENT_CPUS:-any}"
python3 "$HERE/summary.py" "$RESULTS" "$SERVER_CPUS" "$CLIENT_CPUS"
