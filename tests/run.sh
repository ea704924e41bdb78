#!/usr/bin/env bash
# The whole test suite. The store contract runs against MariaDB and PostgreSQL through
# the URLs below (defaults: the loopback services of this project's machines); set a URL
# to the empty string to leave that backend out.
set -euo pipefail
cd "$(dirname "$0")/.."

export FLAGD_TEST_MYSQL_URL="${FLAGD_TEST_MYSQL_URL-mysql://root@127.0.0.1:3306/test}"
export FLAGD_TEST_POSTGRES_URL="${FLAGD_TEST_POSTGRES_URL-postgres://postgres@127.0.0.1:5432/test}"
[ -n "$FLAGD_TEST_MYSQL_URL" ] || unset FLAGD_TEST_MYSQL_URL
[ -n "$FLAGD_TEST_POSTGRES_URL" ] || unset FLAGD_TEST_POSTGRES_URL

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace 2>&1 | tee "$log" || status=$?

# cargo prints one "test result" line per test binary; add them up so the run ends with
# a single total that cannot be mistaken for an empty doc-test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
