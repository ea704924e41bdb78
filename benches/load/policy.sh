#!/usr/bin/env bash
# Single-flag evaluation under churn with flagd-server's control-plane threads (every
# thread but the serving runtime's `tokio-rt-worker`) under different Linux scheduling
# policies and nice levels, switched with `chrt` and `renice` on one running server
# (started at `--control-nice 0`), interleaved within each round next to a ceiling run, so
# that a drifting host affects them alike. What chose the default `--control-nice`; see
# benches/README.md ("Writes under load").
#
#   CARGO_TARGET_DIR=/work/target-perf bash benches/load/policy.sh
#
# Knobs (environment): POLICIES (chrt policy names, or niceN for SCHED_OTHER at nice N;
# "other nice15 nice19 batch idle"), ROUNDS (4),
# DURATION (s per wrk run, 8), CONNECTIONS (64), CHURN_RATE (50), SERVER_CPUS (0),
# CLIENT_CPUS (1), as in run.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/benches/load"
POLICIES=${POLICIES:-other nice15 nice19 batch idle}
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-64}
CHURN_RATE=${CHURN_RATE:-50}
SERVER_CPUS=${SERVER_CPUS-0}
CLIENT_CPUS=${CLIENT_CPUS-1}

SCRIPT=policy.sh
TOOLS="wrk chrt renice curl python3 taskset"
# shellcheck source=benches/load/common.sh
source "$HERE/common.sh"


start_flagd 10 env FLAGD_CONTROL_NICE=0 "${SERVER_PIN[@]}"
export OFREP_TOKEN
OFREP_TOKEN=$("$BIN/ofrep_churn" seed --addr "$FLAGD" --admin-token "$ADMIN" 2>/dev/null)
for path in "$SINGLE_PATH" "$BULK_PATH"; do
  curl -sf -o "$WORK/$(basename "$path").json" -X POST -H "Authorization: Bearer $OFREP_TOKEN" \
    -H 'Content-Type: application/json' -d "{\"context\":$OFREP_CONTEXT}" "http://$FLAGD$path"
done
"${SERVER_PIN[@]}" "$BIN/ofrep_ceiling" --listen "$CEIL" --single-body "$WORK/customer_portal.json" \
  --bulk-body "$WORK/flags.json" >"$WORK/ceiling.log" 2>&1 </dev/null &
PIDS+=($!)
wait_ready "http://$CEIL/" ofrep_ceiling "${PIDS[-1]}" 10

set_policy() { # set_policy NAME: every server thread but the serving runtime's
  local task policy=$1 nice=0
  if [[ $1 == nice* ]]; then policy=other nice=${1#nice}; fi
  for task in /proc/"$FLAGD_PID"/task/*; do
    [[ $(cat "$task/comm") == tokio-rt-worker ]] && continue
    chrt "--$policy" -p 0 "${task##*/}" >/dev/null
    renice -n "$nice" -p "${task##*/}" >/dev/null
  done
}

wrk_run() { # wrk_run SECONDS URL → the RESULT line's fields
  wrk_load "$1" "$2" | sed -n 's/^RESULT //p'
}

measure() { # measure LABEL [churn]
  local url="http://$FLAGD$SINGLE_PATH" churn_pid='' line
  [[ $1 == ceiling ]] && url="http://$CEIL$SINGLE_PATH"
  if [[ ${2:-} == churn ]]; then
    "${CLIENT_PIN[@]}" "$BIN/ofrep_churn" churn --addr "$FLAGD" --admin-token "$ADMIN" \
      --rate "$CHURN_RATE" --seconds $((DURATION + 2)) >"$WORK/churn.out" 2>"$WORK/churn.err" &
    churn_pid=$!
    sleep 1
  fi
  line=$(wrk_run "$DURATION" "$url")
  if [[ -n $churn_pid ]]; then
    wait "$churn_pid" || { echo "policy.sh: ofrep_churn failed: $(cat "$WORK/churn.err")" >&2; return 1; }
    line="$line $(sed -n 's/^CHURN //p' "$WORK/churn.out")"
  fi
  echo "$1 $line" | tee -a "$WORK/results" | sed 's/^/   /'
}

echo "== warm-up"
wrk_run 2 "http://$FLAGD$SINGLE_PATH" >/dev/null
wrk_run 2 "http://$CEIL$SINGLE_PATH" >/dev/null
echo "== $ROUNDS rounds: ceiling, then flagd single under churn with each of: $POLICIES"
for _ in $(seq 1 "$ROUNDS"); do
  measure ceiling
  for policy in $POLICIES; do
    set_policy "$policy"
    measure "$policy" churn
  done
done

echo "== medians over rounds"
python3 - "$WORK/results" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, *fields = line.split()
    runs.setdefault(label, []).append(dict(f.split("=", 1) for f in fields))
med = lambda rows, key: statistics.median(float(r[key]) for r in rows)
for label, rows in runs.items():
    text = f"{label:8} req/s {med(rows, 'rps'):9,.0f}  p99 {med(rows, 'p99_us') / 1000:.2f} ms" \
           f"  max {max(float(r['max_us']) for r in rows) / 1000:.1f} ms"
    if "writes" in rows[0]:
        text += f"  writes late {sum(int(r['late']) for r in rows)}/{sum(int(r['writes']) for r in rows)}" \
                f", write p99 up to {max(float(r['p99_ms']) for r in rows):.0f} ms"
    print("   " + text)
EOF
