# shellcheck shell=bash
# Shared by the scripts here (sourced, not run): the tools check, a work directory removed
# on exit with every process started into PIDS, the release build, CPU pinning, free ports,
# the servers' addresses and admin token, and starting and waiting for a server. Expects
# ROOT, SCRIPT (the caller's name, for messages) and TOOLS (the commands it needs), and
# reads SERVER_CPUS and CLIENT_CPUS (taskset CPU lists; unset or empty: no pinning). Builds
# into CARGO_TARGET_DIR, or the workspace's target/.

package_of() { # the Debian package a command comes from, where it is not its own name
  case $1 in
    callgrind_control) echo valgrind ;;
    chrt | taskset) echo util-linux ;;
    perf) echo linux-perf ;;
    renice) echo bsdutils ;;
    *) echo "$1" ;;
  esac
}
for tool in $TOOLS; do
  command -v "$tool" >/dev/null && continue
  echo "$SCRIPT: $tool is not installed; install it with: apt-get install -y $(package_of "$tool")" >&2
  exit 2
done

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flagd-$SCRIPT.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== build (release) into $TARGET_DIR"
(cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet -p flagd-server -p flagd-benches --bins)
export BIN=$TARGET_DIR/release

# Command prefixes rather than a function, so that `$!` of a backgrounded start is the
# process itself (taskset execs it) and the cleanup really stops it.
# shellcheck disable=SC2034 # used by the sourcing scripts
{
  SERVER_PIN=() CLIENT_PIN=()
  if [[ -n ${SERVER_CPUS:-} ]]; then SERVER_PIN=(taskset -c "$SERVER_CPUS"); fi
  if [[ -n ${CLIENT_CPUS:-} ]]; then CLIENT_PIN=(taskset -c "$CLIENT_CPUS"); fi
}

free_port() { # a loopback port nobody listens on now
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The OFREP request the scripts load: one of the flags `ofrep_churn seed` creates, and bulk,
# with one context, which the clients (ofrep.lua, fixed_requests.py, ofrep_latency) read
# from the environment.
# shellcheck disable=SC2034 # used by the sourcing scripts
{
  SINGLE_PATH=/ofrep/v1/evaluate/flags/customer_portal
  BULK_PATH=/ofrep/v1/evaluate/flags
  export OFREP_CONTEXT='{"companyId":42,"targetingKey":"u1","plan":"pro"}'
}

wrk_load() { # wrk_load SECONDS URL: wrk with ofrep.lua on the client CPUs, THREADS (1) threads
  # and CONNECTIONS (64) connections; its output goes to stdout
  "${CLIENT_PIN[@]}" wrk -t"${THREADS:-1}" -c"${CONNECTIONS:-64}" -d"$1"s -s "$HERE/ofrep.lua" "$2"
}

# Where flagd-server and the ceiling listen, and flagd-server's admin token.
# shellcheck disable=SC2034 # used by the sourcing scripts
{
  FLAGD="127.0.0.1:$(free_port)"
  CEIL="127.0.0.1:$(free_port)"
  ADMIN="$SCRIPT-admin-$RANDOM$RANDOM"
}

start_flagd() { # start_flagd SECONDS [PREFIX...]: flagd-server on $FLAGD, SQLite in $WORK,
  # admin token $ADMIN, run under PREFIX; sets FLAGD_PID and waits up to SECONDS for it
  local seconds=$1
  shift
  "$@" "$BIN/flagd-server" --listen "$FLAGD" --database-url "sqlite:$WORK/flagd.db" \
    --admin-token "$ADMIN" >>"$WORK/flagd.out" 2>>"$WORK/flagd.log" </dev/null &
  FLAGD_PID=$!
  PIDS+=("$FLAGD_PID")
  wait_ready "http://$FLAGD/healthz" flagd-server "$FLAGD_PID" "$seconds"
}

wait_ready() { # wait_ready URL NAME PID SECONDS
  local _
  for _ in $(seq 1 $(($4 * 10))); do
    kill -0 "$3" 2>/dev/null || { echo "$SCRIPT: $2 exited during start-up" >&2; return 1; }
    if curl -s -o /dev/null "$1"; then return; fi
    sleep 0.1
  done
  echo "$SCRIPT: $2 did not answer within $4 s" >&2; return 1
}
