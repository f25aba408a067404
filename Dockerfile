# The vitalwatch image: the worker (`vitalwatch worker`) and the simulator (`vitalwatch simulate`).
#
# CPU torch by default (a CUDA torch wheel is several GB): build for a GPU host with
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
# and run with VITALWATCH_DEVICE=cuda and the GPU passed to the container.

FROM python:3.11-slim AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/vitalwatch
ENV PATH=/opt/vitalwatch/bin:$PATH
# torch first, from its own index and pinned like pyproject.toml, so the package install below
# finds it satisfied instead of pulling the CUDA build from PyPI.
RUN pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY models ./models
COPY worker ./worker
RUN test -f models/checkpoints/default/manifest.json || \
    { echo "no model checkpoint in models/checkpoints/default: train one first (vitalwatch train)" >&2; exit 1; }
RUN pip install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin vitalwatch
COPY --from=build /opt/vitalwatch /opt/vitalwatch
ENV PATH=/opt/vitalwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VITALWATCH_DEVICE=cpu
WORKDIR /tmp
USER vitalwatch
EXPOSE 9108
# /health answers 200 only when the model is loaded and Kafka and Redis answer; the port is
# read through the worker's own Settings, so VITALWATCH_METRICS_PORT moves both together.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; from worker.operations.config import load_settings; urllib.request.urlopen(f'http://127.0.0.1:{load_settings().metrics_port}/health', timeout=4)"]
CMD ["vitalwatch", "worker"]
