#!/usr/bin/env bash
# Release step: copies a flag's configuration validated in staging (rules, allow/deny
# lists, rollout) to production, where the flag keeps its on/off state unless --enable
# switches it on. The segments its rules use are not copied (each environment has its own
# companies): they must exist in production already, or flagctl refuses the promotion
# naming them.
set -euo pipefail

SCRIPT="$(basename "$0")"
# shellcheck source-path=SCRIPTDIR source=lib/flagctl.sh
source "$(dirname "$0")/lib/flagctl.sh"

usage() {
    cat <<USAGE
Usage: $SCRIPT [options] KEY

Copies the configuration of flag KEY from staging to production and waits until the
server applies it. The production on/off state does not change: a flag disabled in
production stays disabled (ship dark, switch on later), one already enabled stays
enabled. With --enable, the flag is then enabled in production too. Segments the rules
use are not copied: production must have them already (flagctl names any it lacks).

Options:
  --from ENV               source environment (default: staging)
  --to ENV                 target environment (default: production)
  --enable                 enable KEY in the target after copying
  --reason TEXT            audit-log reason (default: "promoted from FROM by $SCRIPT")
  --allow-disabled-source  promote even though KEY is disabled in the source (refused by
                           default: a configuration nobody is served has not been validated)
  -h, --help               this help

Environment:
  FLAGD_URL     flagd server (required)
  FLAGD_TOKEN   admin token (required)
  FLAGCTL       flagctl binary (default: flagctl on PATH); jq is needed too

Exit status:
  0    promoted (and enabled with --enable)
  1    server or network error, or a token the server refused (from flagctl)
  2    usage error, or a configuration the server refused; nothing was changed
  3    KEY is disabled in the source (see --allow-disabled-source), or a conflict; nothing
       was changed
  4    flag or environment not found; nothing was changed
  5    a change is stored but was not confirmed applied in time (run again)
  127  flagctl or jq missing; nothing was changed
  130  interrupted

Example:
  $SCRIPT customer_portal                 # production gets staging's rules, still off
  $SCRIPT customer_portal --enable --reason "release 2.4"
USAGE
}

readonly EXIT_CONFLICT=3

FROM=staging
TO=production
ENABLE=false
REASON=""
ALLOW_DISABLED_SOURCE=false
positional=()
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --from) need_value "$@"; FROM="$2"; shift 2 ;;
        --to) need_value "$@"; TO="$2"; shift 2 ;;
        --reason) need_value "$@"; REASON="$2"; shift 2 ;;
        --enable) ENABLE=true; shift ;;
        --allow-disabled-source) ALLOW_DISABLED_SOURCE=true; shift ;;
        --) shift; positional+=("$@"); break ;;
        -*) usage_error "unknown option $1" ;;
        *) positional+=("$1"); shift ;;
    esac
done
((${#positional[@]} == 1)) || usage_error "expected one flag KEY, got ${#positional[@]} argument(s)"
KEY="${positional[0]}"
[[ -n "$KEY" ]] || usage_error "KEY is empty"
[[ "$FROM" != "$TO" ]] || usage_error "--from and --to are both $FROM"
REASON="${REASON:-promoted from $FROM by $SCRIPT}"
require_environment

source_config="$(run_flagctl "reading \`$KEY\` in $FROM" get "$KEY" --env "$FROM" --output json)"
source_state="$(jq -r '.state' <<<"$source_config")"
if [[ "$source_state" != ENABLED && "$ALLOW_DISABLED_SOURCE" != true ]]; then
    die "$EXIT_CONFLICT" "\`$KEY\` is $source_state in $FROM, so its configuration there is not validated;" \
        "enable it in $FROM and test it (\`$FLAGCTL enable $KEY --env $FROM --wait\`)," \
        "or pass --allow-disabled-source; nothing was changed"
fi

say "copying \`$KEY\` from $FROM ($source_state) to $TO"
promoted="$(run_flagctl "promoting \`$KEY\` from $FROM to $TO" promote "$KEY" --from "$FROM" --to "$TO" \
    --reason "$REASON" --wait --output json)"
# The server acknowledges a promotion that changes nothing without an audit event, so
# REASON is recorded nowhere then: say so rather than imply a copy was made.
read -r state unchanged seq < <(jq -r '[.state, (.unchanged // false), .version] | join(" ")' <<<"$promoted")
if [[ "$unchanged" == true ]]; then
    say "\`$KEY\` in $TO already had $FROM's configuration (seq $seq): nothing was copied and nothing new" \
        "was recorded, this REASON is not in the audit log"
    copied="\`$KEY\` in $TO already had $FROM's configuration, nothing was copied"
else
    copied="promoted \`$KEY\` from $FROM to $TO"
fi

if [[ "$ENABLE" == true && "$state" != ENABLED ]]; then
    say "enabling \`$KEY\` in $TO"
    run_flagctl "enabling \`$KEY\` in $TO (its configuration is already promoted)" \
        enable "$KEY" --env "$TO" --reason "$REASON" --wait >&2
    state=ENABLED
fi

# What production serves now, for the deploy log.
run_flagctl "showing \`$KEY\` in $TO" get "$KEY" --env "$TO"
case "$state" in
    ENABLED) echo "$copied; it is ENABLED in $TO" ;;
    *) echo "$copied; it stays $state in $TO (switch it on with $SCRIPT --enable or \`$FLAGCTL enable $KEY --env $TO --wait\`)" ;;
esac
