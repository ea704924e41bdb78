# shellcheck shell=bash
# Shared by the deploy scripts: tool checks, argument helpers, and running flagctl so
# that a failure stops the script with flagctl's own exit code plus a hint naming the
# next step. Sourced, never run; the including script sets SCRIPT (its name, for
# messages) and defines `usage`.

FLAGCTL="${FLAGCTL:-flagctl}"

# Exit codes of our own (the scripts add theirs); every other code is flagctl's, passed
# through unchanged.
readonly EXIT_USAGE=2
readonly EXIT_MISSING_TOOL=127

# die CODE MESSAGE…: the message on stderr, then exit CODE.
die() {
    local code="$1"
    shift
    printf '%s: %s\n' "$SCRIPT" "$*" >&2
    exit "$code"
}

say() {
    printf '%s: %s\n' "$SCRIPT" "$*" >&2
}

usage_error() {
    die "$EXIT_USAGE" "$*; nothing was changed (see $SCRIPT --help)"
}

# need_value OPTION "$@": fails unless OPTION is followed by a value.
need_value() {
    [[ $# -ge 2 && -n "$2" ]] || usage_error "$1 needs a value"
}

# require_environment: flagctl, jq, FLAGD_URL and FLAGD_TOKEN, checked before anything
# is sent, so a half-configured deploy job fails before it changes anything.
require_environment() {
    command -v "$FLAGCTL" >/dev/null 2>&1 ||
        die "$EXIT_MISSING_TOOL" "flagctl not found (FLAGCTL=$FLAGCTL); build it with \`cargo build --release -p flagd-client --bin flagctl\` and put it on PATH or set FLAGCTL to its path"
    command -v jq >/dev/null 2>&1 ||
        die "$EXIT_MISSING_TOOL" "jq not found; install it (\`apt-get install jq\`) and run again"
    [[ -n "${FLAGD_URL:-}" ]] ||
        usage_error "FLAGD_URL is not set; export FLAGD_URL=https://your-flagd-server:8013"
    [[ -n "${FLAGD_TOKEN:-}" ]] ||
        usage_error "FLAGD_TOKEN is not set; export an admin token (\`flagctl token create NAME --role admin\`)"
}

# next_step CODE: what to do after flagctl failed with CODE.
next_step() {
    case "$1" in
        1) echo "check that FLAGD_URL ($FLAGD_URL) answers and that FLAGD_TOKEN is an admin token, then run again" ;;
        2) echo "fix what flagctl's message above names (an argument, or what the server refused); nothing was changed" ;;
        # Exit 3 is any conflict (a change made meanwhile, a promotion the server refuses,
        # …): flagctl's message names which, so the hint must not guess.
        3) echo "flagctl's message above says what conflicts; look at the flag with \`$FLAGCTL get ${KEY:-KEY}\`, resolve the conflict, then run again" ;;
        4) echo "check the flag key and environment with \`$FLAGCTL list\`" ;;
        5) echo "the change is stored but not confirmed applied; check with \`$FLAGCTL wait SEQ\` or run again (a silent replica named above that is gone for good: \`$FLAGCTL replica forget ID\` first)" ;;
        130) echo "interrupted; run again to finish" ;;
        *) echo "see flagctl's message above" ;;
    esac
}

# run_flagctl WHAT ARGS…: runs flagctl; on failure exits with flagctl's code after
# saying which step failed and what to do next. stdout is flagctl's.
run_flagctl() {
    local what="$1"
    shift
    local code=0
    "$FLAGCTL" "$@" || code=$?
    if ((code != 0)); then
        die "$code" "$what failed (flagctl exit $code): $(next_step "$code")"
    fi
}
