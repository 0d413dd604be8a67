# The operator image. Build: docker build -t ghcr.io/llamaops/llama-operator:$(python -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])') .
#
# Reproducible inputs: every Python package comes from requirements/*.lock (pip-compile --generate-hashes, see
# requirements/compile.sh), installed with --require-hashes and wheels only, so a build resolves nothing. The base is
# PYTHON_IMAGE: for a release pin it by digest (--build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:...).
# SOURCE_DATE_EPOCH makes the byte-compiled files hash-checked rather than stamped with the build's clock; with a
# builder that also clamps file times (buildah --timestamp, BuildKit rewrite-timestamp) two builds are identical:
# `buildah bud --no-cache --timestamp 0` twice on one base gave one manifest digest.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# Stage 1: the operator's virtual environment.
FROM ${PYTHON_IMAGE} AS build
ARG SOURCE_DATE_EPOCH=0
# pip trusts the image's CA bundle rather than its own copy (a build behind a TLS-inspecting proxy adds its CA there).
ENV SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY requirements/build.lock requirements/operator.lock requirements/
# /opt/build: pip and the pinned build backend. /opt/venv: what the image runs, without pip or setuptools of its own.
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: --no-deps \
        -r requirements/build.lock \
    && python3 -m venv --without-pip /opt/venv \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-cache-dir --require-hashes --only-binary=:all: \
        --no-deps -r requirements/operator.lock
COPY pyproject.toml README.md ./
COPY operator ./operator
# The project's own wheel, built offline by the locked setuptools; its dependencies are already in /opt/venv.
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --no-index --wheel-dir /tmp/wheel . \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-cache-dir --no-deps --no-index /tmp/wheel/*.whl

# Stage 2: the runtime: the base and the virtual environment, no build tools, no wheels, no build context.
FROM ${PYTHON_IMAGE}
ARG SOURCE_DATE_EPOCH=0
# The user has a passwd entry: kopf names the operator's peering identity after getpass.getuser(), which fails with
# "getpwuid(): uid not found" for a UID the image does not know (seen on the sandbox's real node: a crash loop).
# --no-log-init: no sparse lastlog/faillog entries for a high UID; SOURCE_DATE_EPOCH dates the shadow entry.
RUN groupadd --gid 65532 llama-operator \
    && SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} useradd --no-log-init --uid 65532 --gid 65532 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin llama-operator
COPY --from=build /opt/venv /opt/venv
# The root filesystem is read-only in the chart: nothing to write byte-code to, and all of it is compiled already.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed numeric non-root user, so `runAsNonRoot: true` can verify it without a passwd lookup.
USER 65532:65532
# No HEALTHCHECK: Kubernetes ignores it; the chart's liveness and readiness probes check kopf and the webhook.
ENTRYPOINT ["llama-operator"]
CMD ["run"]
