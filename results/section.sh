# Sourced by the results scripts: `section NAME COMMAND...` prints the command, runs it, prints its wall
# time, and sets the caller's `status` to 1 when it fails (the script goes on with the next section).
section() {
    local name="$1"; shift
    echo "== $name: $*"
    local start=$SECONDS
    "$@" || status=1
    echo "== $name: $((SECONDS - start)) s wall"
}
