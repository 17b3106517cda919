# userservice image: both programs, `userservice` (serve, migrate) and `userservice-operator`.
#
#   docker build -t userservice:dev .                       # laptop: python:3.11-slim-bookworm from the registry
#   bash hack/build-image.sh                                # anywhere: starts an engine, makes a local base if
#                                                           # no registry answers (see docs/packaging.md)
#
# BASE_IMAGE must provide CPython 3.11 with the `venv` module (Debian bookworm's python3 + python3-venv, or the
# official python:3.11 images). Builder and runtime both start FROM it, so the virtualenv built in the first
# stage runs unchanged in the second (same interpreter path). BUILDER_IMAGE may add build-only things such as a
# machine's trust store; it is discarded with the builder stage and never reaches the runtime image.
# Plain Dockerfile syntax only (no BuildKit-only features), so the classic builder of Debian's docker.io works.
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG BUILDER_IMAGE=${BASE_IMAGE}

# ---------------------------------------------------------------------------------------------------------------
FROM ${BUILDER_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The wheels. First every pinned runtime dependency, as binary wheels (no compiler anywhere), from the pins in
# pyproject.toml and constraints.txt alone, so this layer is reused while only the sources change; then the
# project's own wheel.
COPY pyproject.toml constraints.txt ./
RUN python3 -m venv /opt/build \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt \
 && /opt/build/bin/pip wheel --quiet --only-binary=:all: --wheel-dir /wheels -c constraints.txt -r /tmp/requirements.txt
COPY README.md ./
COPY service/ service/
COPY operator/ operator/
RUN /opt/build/bin/pip wheel --quiet --no-deps --wheel-dir /wheels .
# The runtime virtualenv, from those wheels only (no index), without pip/setuptools left in it. The kubernetes
# client ships a second, asyncio copy of itself (kubernetes/aio, ~70 MB, imported by nothing else); it is dropped
# unless the project's own code uses it. Both entrypoints must start before the stage counts as built.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet --no-index --find-links /wheels userservice \
 && /opt/venv/bin/pip uninstall --quiet --yes pip setuptools \
 && if ! grep -rqE 'kubernetes(\.| import )aio' service operator; then \
        rm -rf /opt/venv/lib/python3.11/site-packages/kubernetes/aio; \
    fi \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
 && /opt/venv/bin/userservice --help > /dev/null \
 && /opt/venv/bin/userservice-operator --help > /dev/null

# ---------------------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
# A fixed, non-root UID/GID (Kubernetes `runAsNonRoot` needs the numeric USER below).
RUN groupadd --gid 10001 userservice \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin userservice
COPY --from=builder /opt/venv /opt/venv
# Read-only root filesystem: nothing is written at run time (bytecode is compiled above); /tmp is the only
# scratch path a program may use, mounted as a tmpfs/emptyDir by whoever runs the container.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HTTP_PORT=8080 \
    GRPC_PORT=50051 \
    MANAGEMENT_PORT=9090
USER 10001:10001
WORKDIR /
EXPOSE 8080 50051 9090
CMD ["userservice", "serve"]
# Metadata last: the build date and revision change every build and must not invalidate the layers above.
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
LABEL org.opencontainers.image.title="userservice" \
      org.opencontainers.image.description="User management microservice (REST + gRPC on PostgreSQL) and its Kubernetes operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      org.opencontainers.image.documentation="docs/packaging.md"
