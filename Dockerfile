# The operator image. Build: docker build -t llama-operator:$(python -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])') .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# Stage 1: build wheels for the project and its pinned dependencies.
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Stage 2: the runtime, with no compilers and no build context.
FROM ${PYTHON_IMAGE}
COPY --from=build /wheels /wheels
# The user has a passwd entry: kopf names the operator's peering identity after getpass.getuser(), which fails with
# "getpwuid(): uid not found" for a UID the image does not know (seen on the sandbox's real node: a crash loop).
RUN pip install --no-cache-dir --no-index --find-links=/wheels llama-operator \
    && rm -rf /wheels \
    && groupadd --gid 65532 llama-operator \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin llama-operator
# A fixed numeric non-root user, so `runAsNonRoot: true` can verify it without a passwd lookup.
USER 65532:65532
ENTRYPOINT ["llama-operator"]
CMD ["run"]
