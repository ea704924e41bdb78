#!/usr/bin/env bash
# Runs every PHPUnit suite of the PHP SDK (unit, integration against the real
# flagd-server, Laravel glue). Needs Debian's php-cli php-curl php-apcu phpunit
# php-laravel-framework, and nginx-light openssl for the TLS proxy test.
# FLAGD_SERVER_BIN overrides the server binary; otherwise it is built with cargo
# (honouring CARGO_TARGET_DIR). Extra arguments go to phpunit.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ -z "${FLAGD_SERVER_BIN:-}" ]]; then
    FLAGD_SERVER_BIN="$(cd "$here/.." && cargo build -q -p flagd-server --message-format=json \
        | sed -n 's/.*"executable":"\([^"]*flagd-server\)".*/\1/p' | tail -n 1)"
    if [[ -z "$FLAGD_SERVER_BIN" ]]; then
        echo "php-sdk: could not build flagd-server (set FLAGD_SERVER_BIN)" >&2
        exit 1
    fi
fi
export FLAGD_SERVER_BIN

php_flags=(-d apc.enable_cli=1 -d error_reporting=-1)
if ! php -r 'exit(extension_loaded("apcu") ? 0 : 1);'; then
    echo "php-sdk: ext-apcu not loaded: the shared-cache tests use a per-process cache" >&2
    php_flags=(-d error_reporting=-1)
fi

exec php "${php_flags[@]}" "$(command -v phpunit)" -c "$here/tests/phpunit.xml" "$@"
