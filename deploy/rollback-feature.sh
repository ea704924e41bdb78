#!/usr/bin/env bash
# Kill switch for a release: disables a flag in production, waits until the server
# applies it, then evaluates the flag to prove it is off.
set -euo pipefail

SCRIPT="$(basename "$0")"
# shellcheck source-path=SCRIPTDIR source=lib/flagctl.sh
source "$(dirname "$0")/lib/flagctl.sh"

usage() {
    cat <<USAGE
Usage: $SCRIPT [options] KEY "REASON"

Disables flag KEY (the kill switch) with REASON in the audit log, waits until the
server applies the change, then evaluates KEY and succeeds only once it is off
(reason DISABLED: the flag's off variant, or no variant when it has none).
A flag already disabled is only verified: the server records nothing for a change
that changes nothing, so REASON is not logged, and the script says so.

Options:
  --env ENV              environment (default: production)
  --company ID           company id to evaluate with when verifying (default: rollback-verify;
                         a disabled flag is off for every company)
  --verify-timeout SECS  how long the evaluation may take to show the flag off, e.g. while
                         replicas behind a load balancer catch up (default: 30)
  -h, --help             this help

Environment:
  FLAGD_URL     flagd server (required)
  FLAGD_TOKEN   admin token (required)
  FLAGCTL       flagctl binary (default: flagctl on PATH); jq is needed too

Exit status:
  0    disabled (or already disabled) and verified off
  1    server or network error, or a token the server refused (from flagctl)
  2    usage error; nothing was changed
  3    conflict (from flagctl)
  4    flag or environment not found; nothing was changed
  5    the disable is stored but was not confirmed applied in time (run again)
  10   the disable is stored but the flag still evaluates on after --verify-timeout
  127  flagctl or jq missing; nothing was changed
  130  interrupted

Example:
  FLAGD_URL=https://flags.internal:8013 FLAGD_TOKEN=... \\
    $SCRIPT customer_portal "deploy 1234 rolled back: error rate 5%"
USAGE
}

# Above flagctl's own codes, so a caller can tell "still on" from any flagctl failure.
readonly EXIT_STILL_ON=10

ENVIRONMENT=production
COMPANY=rollback-verify
VERIFY_TIMEOUT=30
positional=()
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --env) need_value "$@"; ENVIRONMENT="$2"; shift 2 ;;
        --company) need_value "$@"; COMPANY="$2"; shift 2 ;;
        --verify-timeout) need_value "$@"; VERIFY_TIMEOUT="$2"; shift 2 ;;
        --) shift; positional+=("$@"); break ;;
        -*) usage_error "unknown option $1" ;;
        *) positional+=("$1"); shift ;;
    esac
done
((${#positional[@]} == 2)) || usage_error "expected KEY and \"REASON\", got ${#positional[@]} argument(s)"
KEY="${positional[0]}"
REASON="${positional[1]}"
[[ -n "$KEY" ]] || usage_error "KEY is empty"
[[ -n "${REASON//[[:space:]]/}" ]] || usage_error "REASON is empty; say why the feature is rolled back"
[[ "$VERIFY_TIMEOUT" =~ ^[0-9]+$ ]] || usage_error "--verify-timeout takes whole seconds, got '$VERIFY_TIMEOUT'"
require_environment

say "disabling \`$KEY\` in $ENVIRONMENT"
disabled="$(run_flagctl "disabling \`$KEY\` in $ENVIRONMENT" disable "$KEY" --env "$ENVIRONMENT" --reason "$REASON" \
    --wait --output json)"
# The server acknowledges a write that changes nothing without an audit event, so on a
# flag that was already off REASON is recorded nowhere: say so rather than imply it was.
read -r already_off seq < <(jq -r '[(.unchanged // false), .version] | join(" ")' <<<"$disabled")
if [[ "$already_off" == true ]]; then
    say "\`$KEY\` was already disabled in $ENVIRONMENT (seq $seq): nothing new was recorded, this" \
        "REASON is not in the audit log (\`$FLAGCTL audit $KEY --env $ENVIRONMENT\` shows the earlier disable)"
else
    say "disabled \`$KEY\` in $ENVIRONMENT (seq $seq)"
fi

# The disable is applied on the server flagctl talked to; behind a load balancer another
# replica may answer the evaluation, so retry until the deadline.
deadline=$((SECONDS + VERIFY_TIMEOUT))
while :; do
    evaluation="$(run_flagctl "evaluating \`$KEY\` in $ENVIRONMENT" eval "$KEY" --env "$ENVIRONMENT" \
        --company "$COMPANY" --output json)"
    # Reason DISABLED is the server's word that the kill switch is served: the flag's off
    # variant, or no variant when it has none. The value last, as it may hold spaces.
    read -r reason variant value < <(jq -r '[.reason, (.variant // "-"), (.value | tojson)] | join(" ")' <<<"$evaluation")
    if [[ "$reason" == DISABLED ]]; then
        if [[ "$variant" != - ]]; then
            served="gets $value, variant $variant"
        else
            served="gets no variant and no value (the flag has no off variant: callers get their default)"
        fi
        say "verified: \`$KEY\` is off in $ENVIRONMENT (company $COMPANY $served, reason $reason)"
        if [[ "$already_off" == true ]]; then
            echo "\`$KEY\` was already disabled in $ENVIRONMENT, verified off; nothing new was recorded for: $REASON"
        else
            echo "rolled back \`$KEY\` in $ENVIRONMENT: $REASON"
        fi
        exit 0
    fi
    if ((SECONDS >= deadline)); then
        die "$EXIT_STILL_ON" "\`$KEY\` still evaluates to $value (variant $variant, reason $reason) in $ENVIRONMENT" \
            "${VERIFY_TIMEOUT}s after the disable; the disable is stored (\`$FLAGCTL audit $KEY\`)," \
            "but not served: check every server's /readyz, then run this script again"
    fi
    sleep 1
done
