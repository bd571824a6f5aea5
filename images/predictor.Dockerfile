# The predictor image: the KServe model server for the stable and canary model versions.
#   docker build -f images/predictor.Dockerfile -t movierec/predictor:0.1.0 .
# The serving dependencies only (pyproject's `serve` group), its own entry point and port.
FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY components ./components
COPY pipelines ./pipelines
COPY predictor ./predictor
COPY simulator ./simulator
COPY movierec ./movierec
RUN python -m venv /opt/movierec \
 && /opt/movierec/bin/pip install --no-cache-dir --upgrade pip==24.3.1 \
 && /opt/movierec/bin/pip install --no-cache-dir -c constraints.txt '.[serve]'

FROM python:3.11.7-slim-bookworm
LABEL org.opencontainers.image.title="movierec-predictor"
RUN groupadd --system --gid 10001 movierec \
 && useradd --system --uid 10001 --gid movierec --home-dir /home/movierec --create-home movierec
COPY --from=build /opt/movierec /opt/movierec
ENV PATH=/opt/movierec/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
USER 10001
WORKDIR /home/movierec
EXPOSE 8080
ENTRYPOINT ["python", "-m", "predictor"]
