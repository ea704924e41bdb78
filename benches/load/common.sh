# shellcheck shell=bash
# Shared by run.sh and callgrind.sh (sourced, not run): a work directory removed on exit
# with every process started into PIDS, the release build, and waiting for a server.
# Expects ROOT and SCRIPT (the caller's name, for messages). Builds into CARGO_TARGET_DIR,
# or the workspace's target/.

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

wait_ready() { # wait_ready URL NAME PID SECONDS
  local _
  for _ in $(seq 1 $(($4 * 10))); do
    kill -0 "$3" 2>/dev/null || { echo "$SCRIPT: $2 exited during start-up" >&2; return 1; }
    if curl -s -o /dev/null "$1"; then return; fi
    sleep 0.1
  done
  echo "$SCRIPT: $2 did not answer within $4 s" >&2; return 1
}
