# syntax=docker/dockerfile:1
#
# The zkop operator image:
#
#     docker build -t zkop:0.1.0 .
#
# NOTE: this image cannot be built on the machines zkop is developed and tested on: there is
# no Docker engine there, so this file has never been built. The Kubernetes tests run the operator
# as a process with the Helm chart's ServiceAccount, RBAC, OperatorConfig and command line instead.
#
# The operator itself needs no Java: it talks to ZooKeeper as a client (kazoo) and to the
# Kubernetes API. (Running ZooKeeper servers as local processes, the default --platform local,
# would need a JRE and Apache ZooKeeper in the image; the chart's ZooKeeper runs in its own Pods.)

FROM python:3.11-slim AS build
WORKDIR /src
# Only what the package is built from (see .dockerignore).
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ZKOP_STATE_DIR=/var/lib/zkop
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels zkop \
    && groupadd --system --gid 10001 zkop \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/zkop --create-home \
       --shell /usr/sbin/nologin zkop
# A numeric user, so Kubernetes can check runAsNonRoot (the chart runs it as 10001 too).
USER 10001:10001
WORKDIR /var/lib/zkop
ENTRYPOINT ["zkop"]
CMD ["operator", "run", "--help"]
