#!/usr/bin/env bash
# The whole test suite: every Rust crate (unit, integration, end-to-end with the real
# server and real OFREP clients from npm and PyPI), then the PHP SDK's PHPUnit suites.
# The store contract runs against MariaDB and PostgreSQL through the URLs below
# (defaults: the loopback services of this project's machines); set a URL to the empty
# string to leave that backend out.
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
php-sdk/run-tests.sh 2>&1 | tee -a "$log" || status=$?

# cargo prints one "test result" line per test binary and PHPUnit its own summary; add
# them up so the run ends with a single total.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^OK \([0-9]+ tests?,/ { gsub(/[(]/, "", $2); p += $2 }
     /^Tests: [0-9]+,/ { t = $2 + 0; e = 0; for (i = 3; i <= NF; i++) if ($i ~ /^(Failures|Errors):$/) e += $(i+1) + 0; p += t - e; f += e }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
