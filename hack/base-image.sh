#!/usr/bin/env bash
# Make the local base images for the Dockerfile where no container registry can be reached:
#
#   userservice-base:bookworm        runtime base: Debian bookworm (debootstrap --variant=minbase) with
#                                    python3 (3.11), python3-venv and ca-certificates; docs, man pages, locales
#                                    and apt lists removed. Passed as BASE_IMAGE.
#   userservice-base-build:bookworm  the same plus this machine's CA bundle for pip (machines whose egress is
#                                    behind a TLS-inspecting proxy). Passed as BUILDER_IMAGE: used only by the
#                                    builder stage, it never reaches the runtime image.
#
# Needs root and a running engine (hack/docker.sh). Skips the work when the images exist; FORCE=1 redoes it.
# Prints the two image names (runtime, then builder) on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${LOCAL_BASE_IMAGE:-userservice-base:bookworm}
BUILD_BASE=${LOCAL_BUILDER_IMAGE:-userservice-base-build:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK=${CACHE_DIR:-$PWD/.cache}/base-image
mkdir -p "$WORK"

have() { docker image inspect "$1" > /dev/null 2>&1; }

if [[ ${FORCE:-0} == 1 ]] || ! have "$BASE"; then
    if ! command -v debootstrap > /dev/null; then
        echo "base-image.sh: installing debootstrap" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends debootstrap > "$WORK/apt.log" 2>&1 \
            || { cat "$WORK/apt.log" >&2; exit 1; }
    fi
    rootfs="$WORK/rootfs"
    rm -rf "$rootfs"
    echo "base-image.sh: debootstrap bookworm into $rootfs (log: $WORK/debootstrap.log)" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
        || { tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }
    # Slim it: nothing below is needed to run Python programs.
    rm -rf "$rootfs"/usr/share/{doc,man,info,locale,lintian,linda}/* \
           "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* \
           "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old "$rootfs"/var/log/* "$rootfs"/tmp/*
    chroot "$rootfs" python3 --version > /dev/null
    tar --numeric-owner -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase bookworm + python3 python3-venv ca-certificates" \
        - "$BASE" > /dev/null
    rm -rf "$rootfs"
    FORCE=1
fi

if [[ ${FORCE:-0} == 1 ]] || ! have "$BUILD_BASE"; then
    ctx="$WORK/build-context"
    rm -rf "$ctx" && mkdir -p "$ctx"
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
    docker build --quiet -t "$BUILD_BASE" -f - "$ctx" > /dev/null <<DOCKERFILE
FROM $BASE
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
DOCKERFILE
    rm -rf "$ctx"
fi

echo "$BASE"
echo "$BUILD_BASE"
