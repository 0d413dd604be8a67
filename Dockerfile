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
RUN pip install --no-cache-dir --no-index --find-links=/wheels llama-operator \
    && rm -rf /wheels
# A fixed numeric non-root user, so `runAsNonRoot: true` can verify it without a passwd lookup.
USER 65532:65532
ENTRYPOINT ["llama-operator"]
CMD ["run"]
