#!/usr/bin/env bash
# Instructions per request, flagd-server against the ceiling, under callgrind: repeatable
# on a busy machine where wall-clock load figures are not. For each server and endpoint:
# warm up, zero the counters, send COUNT requests on one keep-alive connection, dump; the
# dump's total divided by COUNT is the figure. Then the same for 100 of the churn's quick
# operations (flagd-server only). Method: benches/README.md ("Server load").
#
#   CARGO_TARGET_DIR=/work/target-perf bash benches/load/callgrind.sh
#
# Knobs (environment): COUNT (requests measured, 2000), WARM (requests before, 200),
# KEEP (a directory to keep the dumps in, for callgrind_annotate; default: none), CACHE=1
# (also simulate the first-level caches and print their misses per request: where extra
# instructions cost more than their count says; about 3x slower).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/benches/load"
COUNT=${COUNT:-2000}
WARM=${WARM:-200}
KEEP=${KEEP:-}
CACHE=${CACHE:-0}

SCRIPT=callgrind.sh
TOOLS="valgrind callgrind_control curl python3"
# shellcheck source=benches/load/common.sh
source "$HERE/common.sh"

# Uncompressed names, so that every dump reads on its own in callgrind_annotate.
CALLGRIND=(valgrind --tool=callgrind --dump-instr=no --compress-strings=no --compress-pos=no)
if ((CACHE)); then CALLGRIND+=(--cache-sim=yes); fi

figures() { # figures DUMP DIVISOR → instructions per unit, with CACHE=1 first-level misses too
  local -a t
  read -ra t <<<"$(sed -n 's/^totals: //p' "$1")"
  printf '%9d instructions' $((t[0] / $2))
  # With the cache simulated the totals are Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
  if ((CACHE)); then printf ', %5d I1 misses, %4d D1 misses' $((t[3] / $2)) $(((t[4] + t[5]) / $2)); fi
}


# Seeding is slow under valgrind: seed a plain server, stop it, profile a second one on
# the same database.
start_flagd 60
export OFREP_TOKEN
OFREP_TOKEN=$("$BIN/ofrep_churn" seed --addr "$FLAGD" --admin-token "$ADMIN" 2>/dev/null)
for path in "$SINGLE_PATH" "$BULK_PATH"; do
  curl -sf -o "$WORK/$(basename "$path").json" -X POST -H "Authorization: Bearer $OFREP_TOKEN" \
    -H 'Content-Type: application/json' -d "{\"context\":$OFREP_CONTEXT}" "http://$FLAGD$path"
done
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

start_flagd 60 "${CALLGRIND[@]}" --callgrind-out-file="$WORK/flagd.%p.cg"
"${CALLGRIND[@]}" --callgrind-out-file="$WORK/ceiling.%p.cg" "$BIN/ofrep_ceiling" --listen "$CEIL" \
  --single-body "$WORK/customer_portal.json" --bulk-body "$WORK/flags.json" >"$WORK/ceiling.log" 2>&1 </dev/null &
PIDS+=($!)
CEIL_PID=${PIDS[-1]}
wait_ready "http://$CEIL/" ofrep_ceiling "$CEIL_PID" 60

measure() { # measure NAME PID ADDR PATH → "NAME … per request"
  local dump
  python3 "$HERE/fixed_requests.py" "$3" "$4" "$WARM"
  callgrind_control -z "$2" >/dev/null 2>&1
  python3 "$HERE/fixed_requests.py" "$3" "$4" "$COUNT"
  callgrind_control -d "$1" "$2" >/dev/null 2>&1
  dump=$(ls -t "$WORK"/*.cg.* | head -1)
  if [[ -n $KEEP ]]; then mkdir -p "$KEEP" && cp "$dump" "$KEEP/$1.cg"; fi
  printf '%-16s %s per request\n' "$1" "$(figures "$dump" "$COUNT")"
}

echo "== $COUNT requests per endpoint and server, one keep-alive connection"
measure ceiling_single "$CEIL_PID" "$CEIL" "$SINGLE_PATH"
measure flagd_single "$FLAGD_PID" "$FLAGD" "$SINGLE_PATH"
measure ceiling_bulk "$CEIL_PID" "$CEIL" "$BULK_PATH"
measure flagd_bulk "$FLAGD_PID" "$FLAGD" "$BULK_PATH"

# The churn's quick operations, last because they change the flags: each is an audited
# transaction plus a recompile and swap of the production snapshot, on the server's core.
callgrind_control -z "$FLAGD_PID" >/dev/null 2>&1
CHURN=$("$BIN/ofrep_churn" churn --addr "$FLAGD" --admin-token "$ADMIN" --rate 20 --seconds 5)
callgrind_control -d flagd_write "$FLAGD_PID" >/dev/null 2>&1
WRITES=$(sed -n 's/.* ok=\([0-9]*\) .*/\1/p' <<<"$CHURN")
[[ ${WRITES:-0} -gt 0 ]] || { echo "callgrind.sh: the churn made no write: $CHURN" >&2; exit 1; }
DUMP=$(ls -t "$WORK"/flagd.*.cg.* | head -1)
if [[ -n $KEEP ]]; then cp "$DUMP" "$KEEP/flagd_write.cg"; fi
printf '%-16s %s per write (%d quick operations)\n' flagd_write "$(figures "$DUMP" "$WRITES")" "$WRITES"
