# syntax=docker/dockerfile:1.7
# The runctl operator image: build a wheel (with every dependency as a wheel) in one stage,
# install it into a virtual environment on the same slim base in the next, run as a non-root
# user with nothing but the installed environment. Build: `docker build -t runctl:0.1.0 .`
#
# The base is pinned to an exact patch release; pin it by digest too when publishing, e.g.
#   docker build --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="runctl" \
      org.opencontainers.image.description="The runctl operator: runs StoryRuns, DAGs of steps, on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/runctl/bin:$PATH
RUN groupadd --system --gid 10001 runctl \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin runctl
# Install from the wheels without copying them into a layer; no index: only what was built.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/runctl \
 && /opt/runctl/bin/pip install --no-index --find-links=/wheels runctl \
 && /opt/runctl/bin/pip uninstall --yes pip \
 && /opt/runctl/bin/python -m compileall -q /opt/runctl
USER 10001:10001
WORKDIR /tmp
# 8080: Prometheus metrics; 8081: kopf's liveness endpoint (/healthz); 9443: admission webhook.
EXPOSE 8080 8081 9443
ENTRYPOINT ["runctl", "operator"]
