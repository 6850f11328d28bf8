# syntax=docker/dockerfile:1
# trio-mock as a container. Build: docker build -t trio-mock .
# Run:   docker run --rm -p 8000:8000 trio-mock --ttft-ms 50 --itl-ms 5
# Every setting is a flag (arguments after the image name) or a TRIO_MOCK_* variable (-e).
# tests/test_deploy.py parses this file: it installs the project the way the build stage
# does, then runs ENTRYPOINT with the ENV below and the HEALTHCHECK against it.

# --- build: one wheel from the source; nothing of this stage reaches the final image ---
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Metadata first, code last: the layers above the COPY of src/ survive code edits.
COPY pyproject.toml README.md LICENSE ./
COPY src/ src/
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

# --- final: the wheel and its dependencies on a slim Python, run as a non-root user ---
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRIO_MOCK_HOST=0.0.0.0 \
    TRIO_MOCK_PORT=8000
# The bind mount keeps the wheel out of every layer; the user is created in the same layer.
# With the optional extras: Hugging Face tokenizers (--tokenizer-models, a mounted
# tokenizer.json or HF cache) and record mode's HTTP client (--record-upstream).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    set -- /wheels/*.whl && python -m pip install "$1[hf,record]" \
    && groupadd --system --gid 10001 trio-mock \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin trio-mock
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# Standard library only (slim images have no curl). It follows TRIO_MOCK_PORT; a --port
# flag does not reach it, so change the port with -e TRIO_MOCK_PORT=... instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('TRIO_MOCK_PORT', '8000'), timeout=2)"]
# SIGTERM: stop accepting, let streams finish for TRIO_MOCK_GRACEFUL_TIMEOUT_S, exit 0.
STOPSIGNAL SIGTERM
# Exec form: trio-mock is PID 1 and gets the signal itself (no shell in between).
ENTRYPOINT ["trio-mock"]
