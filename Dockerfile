# syntax=docker/dockerfile:1
#
# retention: the batch job (`retention run`) and the worker (`retention serve`, the default).
#
#   docker build -t retention:0.1.0 .
#   docker run --rm --read-only --tmpfs /tmp --env-file retention.env retention:0.1.0 run
#
# The image runs as uid 10001 on a read-only root filesystem; /tmp is the only path it
# writes, so give it a tmpfs (docker --tmpfs /tmp) or an emptyDir (Kubernetes). See
# docs/operations.md for the settings, the exit codes and the manifests in deploy/.

# One base for both stages, so the wheel is built and installed by the same Python.
# Pin it by digest in production (python:3.11-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Only what the wheel is built from: pyproject.toml names README.md as its readme.
COPY pyproject.toml README.md ./
COPY retention ./retention
RUN python -m pip wheel --no-cache-dir --no-deps -w /dist .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="retention" \
      org.opencontainers.image.description="Retention-enforcement batch job: deletes or anonymises expired rows and keeps a tamper-evident audit log." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"

# tini reaps children and forwards SIGTERM, so a stopping pod lets the current batch
# finish (the product's own signal handling) instead of being killed mid-transaction.
RUN apt-get update \
    && apt-get install -y --no-install-recommends "tini=0.19.*" \
    && rm -rf /var/lib/apt/lists/*

# The wheel with both database drivers; the bind mount keeps /dist out of the image.
# pip compiles the bytecode here, while the filesystem is still writable. DL3013 (pin
# versions) cannot see that the argument is the wheel built above: its dependencies
# follow pyproject.toml's ranges; add a constraints file to freeze them.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    set -- /dist/retention_enforcer-*.whl \
    && python -m pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore "$1[postgres,mysql]" \
    && retention --version

# The shipped policy as a default; operators mount their own over /etc/retention.
COPY --chmod=0644 policies.yaml /etc/retention/policies.yaml

RUN groupadd --system --gid 10001 retention \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin retention

# A read-only root filesystem: nothing may be written but /tmp (HOME and TMPDIR point
# there, bytecode is never written). The working directory is /tmp too, so the SQLite
# default of `retention demo` works in a throw-away container; production sets
# RETENTION_DATABASE_URL.
ENV HOME=/tmp \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RETENTION_POLICY_FILE=/etc/retention/policies.yaml \
    RETENTION_LOG_FORMAT=json
WORKDIR /tmp

USER 10001
ENTRYPOINT ["/usr/bin/tini", "--", "retention"]
CMD ["serve"]
