#!/usr/bin/env bash
# Build the userservice image (both programs) with a real Docker engine: `make build`.
#
#   IMAGE=userservice:dev        tag to build (default); also tagged <repository>:<version from pyproject>
#   BASE_IMAGE=...               base for both stages; default python:3.11-slim-bookworm when the engine has it
#                                or can pull it, else a local Debian bookworm base made by hack/base-image.sh
#   BUILDER_IMAGE=...            base for the builder stage only (default: BASE_IMAGE)
#   LOCAL_BASE=1                 skip the registry and use the local base
#
# Starts an engine first if none answers (hack/docker.sh). Prints the image's size at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-userservice:dev}
DEFAULT_BASE=python:3.11-slim-bookworm

bash hack/docker.sh

if [[ -z ${BASE_IMAGE:-} && ${LOCAL_BASE:-0} != 1 ]]; then
    if docker image inspect "$DEFAULT_BASE" > /dev/null 2>&1 \
        || timeout 120 docker pull --quiet "$DEFAULT_BASE" > /dev/null 2>&1; then
        BASE_IMAGE=$DEFAULT_BASE
    else
        echo "build-image.sh: $DEFAULT_BASE cannot be pulled (no registry reachable): using a local base" >&2
    fi
fi
if [[ -z ${BASE_IMAGE:-} ]]; then
    mapfile -t local_bases < <(bash hack/base-image.sh)
    BASE_IMAGE=${local_bases[0]}
    BUILDER_IMAGE=${BUILDER_IMAGE:-${local_bases[1]}}
fi
BUILDER_IMAGE=${BUILDER_IMAGE:-$BASE_IMAGE}

# Debian's docker.io client (or a newer client without the buildx plugin) builds with the classic builder;
# the Dockerfile needs nothing more.
if ! docker buildx version > /dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain -- service operator pyproject.toml Dockerfile 2>/dev/null) ]]; then
    revision="$revision-dirty"
fi

echo "build-image.sh: docker build -t $IMAGE (base $BASE_IMAGE, builder $BUILDER_IMAGE)" >&2
start=$(date +%s)
docker build \
    --tag "$IMAGE" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" \
    --build-arg BUILDER_IMAGE="$BUILDER_IMAGE" \
    --build-arg VERSION="$version" \
    --build-arg VCS_REF="$revision" \
    --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    ${DOCKER_BUILD_ARGS:-} \
    .
# Also tag <repository>:<version>, the tag the Helm chart uses by default (its appVersion).
docker tag "$IMAGE" "${IMAGE%:*}:$version"
size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
echo "build-image.sh: built $IMAGE in $(( $(date +%s) - start ))s; size $(( size / 1000000 )) MB ($size bytes)" >&2
