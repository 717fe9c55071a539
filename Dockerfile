# syntax=docker/dockerfile:1
#
# leaderjob: the daemon image. Used as a Kubernetes native sidecar (deploy/kubernetes/), by the
# compose demo (docker-compose.yml), and for the fenced-store example (examples/fencestore.py, which
# compose mounts: it is not part of the image).
#
#   docker build -t leaderjob:dev .
#   docker run --rm leaderjob:dev run --help
#
# Both stages use the same pinned base image, so the virtualenv built in the first one finds the
# same /usr/local/bin/python3 in the second. The base is pinned by digest (that of the tag's
# multi-platform image index), so a rebuilt tag cannot change the image under a commit.
# Tag: python:3.12.11-slim-bookworm. To update Python, change the tag and the digest together:
#   docker buildx imagetools inspect python:<tag>   (the "Digest:" line)
ARG PYTHON_IMAGE=python:3.12.11-slim-bookworm@sha256:519591d6871b7bc437060736b9f7456b8731f1499a57e22e6c285135ae657bf7

# ---------------------------------------------------------------------------------------------
# builder: build a wheel of the project and install it, with its runtime dependencies, into a
# self-contained virtualenv at /opt/leaderjob. Nothing of this stage but that directory survives.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# constraints.txt pins the runtime dependency closure and the build backend (setuptools; see the
# file for how to refresh it), so two builds of one commit get the same libraries. It is given
# through the environment because pip's build isolation (the temporary environment that builds
# the wheel) reads PIP_CONSTRAINT too, where a --constraint option would not reach; newer pips
# read the build environment's pins from PIP_BUILD_CONSTRAINT instead, so both are set.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/src/deploy/docker/constraints.txt \
    PIP_BUILD_CONSTRAINT=/src/deploy/docker/constraints.txt \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# The build context is an allow-list (.dockerignore): pyproject.toml, README, LICENSE, leaderjob/
# and deploy/docker/constraints.txt. Tests, docs, .venv and .git never reach the daemon image.
COPY . /src

# The venv is built in place at its final path.
RUN python -m venv /opt/leaderjob \
 && /opt/leaderjob/bin/pip install /src \
 && /opt/leaderjob/bin/leaderjob --version

# ---------------------------------------------------------------------------------------------
# runtime: python-slim + tini + the venv. Runs as an unprivileged numeric user.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG PYTHON_IMAGE
# pyproject.toml's version (tests/deploy/test_version.py fails when they differ); CI may pass it.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="leaderjob" \
      org.opencontainers.image.description="Run a scheduled command exactly once across many replicas, fenced by an etcd lease." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="docker.io/library/${PYTHON_IMAGE}"

# tini is PID 1: leaderjob starts jobs in their own sessions, and anything a job leaves behind
# (a grandchild whose parent exited) is re-parented to PID 1. leaderjob does not reap strangers,
# so without an init those would pile up as zombies. tini reaps them and forwards SIGTERM to
# leaderjob, which stops the job, revokes its lease and exits 0 (graceful handover).
# The version is pinned (hadolint DL3008) to bookworm's only tini build; bump it together with
# PYTHON_IMAGE if the base moves to another Debian release.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric UID/GID (not a name) so Kubernetes' runAsNonRoot can verify it without reading
# /etc/passwd. /data is a writable directory owned by that user: the fenced-store example keeps
# its database there, and a named volume mounted on it inherits the ownership.
RUN groupadd --system --gid 10001 leaderjob \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/leaderjob --create-home \
      --shell /usr/sbin/nologin leaderjob \
 && mkdir /data \
 && chown 10001:10001 /data

COPY --from=builder /opt/leaderjob /opt/leaderjob
# The license travels with the image (it is also in the wheel's dist-info, inside the venv).
COPY --from=builder /src/LICENSE /usr/share/doc/leaderjob/LICENSE

ENV PATH=/opt/leaderjob/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
WORKDIR /home/leaderjob

# /metrics, /healthz, /readyz, /leader, /status (--metrics-addr, default 0.0.0.0:9102).
EXPOSE 9102

# Liveness for plain `docker run` and compose. Kubernetes ignores HEALTHCHECK; the manifests have
# their own probes. slim has no curl, so python asks: urlopen raises on a refused connection or on
# any non-2xx answer (/healthz answers 500 when unhealthy), which makes the exit status 1.
# With --metrics-addr off or on another port, override or disable this (--no-healthcheck).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9102/healthz', timeout=2)"]

# Kubernetes `args:` and compose `command:` supply the leaderjob sub-command; overriding `command:`
# in Kubernetes (or `entrypoint:` in compose) replaces tini too, so keep it in front.
ENTRYPOINT ["/usr/bin/tini", "--", "leaderjob"]
CMD ["--help"]
