# The RoadLens image: the code location (gRPC code server), and the same image runs the
# Dagster webserver and daemon (docker-compose.yml, deploy/k8s/values.yaml). See docs/deploy.md.
#
#   docker build -t roadlens:latest .
#   docker build --build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index> -t roadlens:cpu .
FROM python:3.11-slim

# Empty: torch and torchvision come from PyPI with ultralytics (CUDA wheels on linux/amd64,
# ~4 GB, GPU-ready). Set it to PyTorch's CPU-only wheel index for a CPU host: ~1 GB smaller,
# and the detector then runs OpenVINO or ONNX Runtime on CPU as it does by default anyway.
ARG TORCH_INDEX_URL=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# OpenCV (pulled in by ultralytics) needs libGL and GLib even when headless; no compiler:
# every dependency ships manylinux wheels. (On trixie, libglib2.0-0 resolves to
# libglib2.0-0t64; the name works on bookworm and trixie alike.)
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/dagster/app

# Dependencies first, from pyproject's list, so code edits do not reinstall them.
COPY pyproject.toml ./
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" torch torchvision; \
    fi \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code: the roadlens library is installed editable (its `roadlens` CLI, and its package
# data: roadlens/sql, roadlens/models) and the Dagster layers, roadlens_dagster/.
COPY . .
RUN pip install --no-deps -e .

# Dagster's production instance (PostgreSQL storage from DAGSTER_PG_URL, run queue,
# retries, monitoring): the webserver, the daemon and every run read the same file.
ENV DAGSTER_HOME=/opt/dagster/dagster_home \
    PYTHONPATH=/opt/dagster/app \
    ROADLENS_HOME=/data/roadlens \
    ROADLENS_LAKE=/data/lake \
    ROADLENS_LANDING=/data/landing \
    YOLO_OFFLINE=1 \
    YOLO_CONFIG_DIR=/data/roadlens/ultralytics
COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml

# Non-root. The data folders are created here and owned by the user, so named volumes
# mounted over them start with the right owner.
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin roadlens \
    && mkdir -p /data/roadlens /data/lake /data/landing "$DAGSTER_HOME/storage" \
    && chown -R roadlens:roadlens /data "$DAGSTER_HOME"
USER roadlens
# Fail the build, not the first deploy, when the code location cannot load.
RUN python -c "import roadlens_dagster.orchestration.definitions"

EXPOSE 3000 4000
CMD ["dagster", "code-server", "start", "-m", "roadlens_dagster.orchestration.definitions", "-h", "0.0.0.0", "-p", "4000", "--location-name", "roadlens"]
