#!/usr/bin/env bash
# Kill-switch propagation across three replicas (benches/src/bin/propagation.rs), on
# PostgreSQL (woken by NOTIFY) and on MariaDB (polling), each in a database of its own
# that is dropped afterwards. Figures and method: benches/README.md ("Propagation").
#
#   bash benches/propagation/run.sh
#
# Knobs (environment): TOGGLES (200), REPLICAS (3), SYNC_INTERVAL (200ms),
# MYSQL_URL (mysql://root@127.0.0.1:3306/test), POSTGRES_URL (postgres://postgres@127.0.0.1:5432/test);
# set a URL empty to leave that backend out.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOGGLES=${TOGGLES:-200}
REPLICAS=${REPLICAS:-3}
SYNC_INTERVAL=${SYNC_INTERVAL:-200ms}
MYSQL_URL=${MYSQL_URL-mysql://root@127.0.0.1:3306/test}
POSTGRES_URL=${POSTGRES_URL-postgres://postgres@127.0.0.1:5432/test}
DB="flagd_propagation_$$"

cd "$ROOT"
cargo build --release -p flagd-server -p flagd-benches --bin flagd-server --bin propagation >&2
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export FLAGD_SERVER_BIN="$TARGET_DIR/release/flagd-server"

cleanup() {
    [[ -z $POSTGRES_URL ]] || psql "$POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    [[ -z $MYSQL_URL ]] || mysql -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}
trap cleanup EXIT

run() { # run LABEL URL
    echo "== $1 ($REPLICAS replicas, $TOGGLES toggles, sync interval $SYNC_INTERVAL)" >&2
    "$TARGET_DIR/release/propagation" --database-url "$2" --replicas "$REPLICAS" --toggles "$TOGGLES" \
        --sync-interval "$SYNC_INTERVAL" | sed "s/^RESULT /RESULT backend=$1 /"
}

if [[ -n $POSTGRES_URL ]]; then
    psql "$POSTGRES_URL" -qc "CREATE DATABASE $DB"
    run postgres "${POSTGRES_URL%/*}/$DB"
fi
if [[ -n $MYSQL_URL ]]; then
    mysql -uroot -h127.0.0.1 -e "CREATE DATABASE $DB"
    run mariadb "${MYSQL_URL%/*}/$DB"
fi
