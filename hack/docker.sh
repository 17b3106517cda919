#!/usr/bin/env bash
# Make sure a Docker engine answers, starting one if needed. Idempotent; safe to run again.
#
# - An engine that already answers (`docker info`), as on a laptop, is used as it is.
# - Otherwise, as root on Debian/Ubuntu (a machine without Docker): install Debian's docker.io if `dockerd` is missing,
#   then start `dockerd` in the background (log: .cache/docker/dockerd.log) and wait until it answers.
# Prints nothing on success but a line saying what it did.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${CACHE_DIR:-$PWD/.cache}/docker
mkdir -p "$CACHE"

engine_up() { docker info > /dev/null 2>&1; }

if command -v docker > /dev/null && engine_up; then
    exit 0
fi

if [[ $(id -u) != 0 ]]; then
    echo "docker.sh: no Docker engine answers and not root: start Docker yourself (or run as root)" >&2
    exit 1
fi

# One starter at a time (several make targets/tests may race here).
exec 9> "$CACHE/start.lock"
flock 9
if command -v docker > /dev/null && engine_up; then
    exit 0
fi

if ! command -v dockerd > /dev/null; then
    echo "docker.sh: installing Debian's docker.io" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io > "$CACHE/apt.log" 2>&1 \
        || { cat "$CACHE/apt.log" >&2; exit 1; }
fi

if ! pgrep -x dockerd > /dev/null; then
    echo "docker.sh: starting dockerd in the background (log: $CACHE/dockerd.log)" >&2
    # setsid: the daemon outlives this script and the make target that ran it. Every inherited descriptor above
    # stderr is closed first: a daemon keeping one that a caller's `flock` holds (the one-node cluster's lock)
    # would hold that lock for as long as it runs.
    (
        for fd in /proc/self/fd/*; do
            n=${fd##*/}
            if ((n > 2)); then eval "exec $n>&-" 2> /dev/null || true; fi
        done
        exec setsid nohup dockerd > "$CACHE/dockerd.log" 2>&1 < /dev/null
    ) &
    echo $! > "$CACHE/dockerd.pid"
fi

for _ in $(seq 1 60); do
    if engine_up; then
        exit 0
    fi
    sleep 1
done
echo "docker.sh: dockerd did not answer within 60 s; its log:" >&2
tail -n 30 "$CACHE/dockerd.log" >&2 || true
exit 1
