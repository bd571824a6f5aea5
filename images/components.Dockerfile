# The component image: the base_image of every Kubeflow pipeline step. The project installed,
# nothing else. Build from the repository root:
#   docker build -f images/components.Dockerfile -t movierec/components:0.1.0 .
# Pinned base; the build stage holds pip and its caches, the final stage only the installed venv.
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
 && /opt/movierec/bin/pip install --no-cache-dir -c constraints.txt '.[pipeline]'

FROM python:3.11.7-slim-bookworm
LABEL org.opencontainers.image.title="movierec-components"
RUN groupadd --system --gid 10001 movierec \
 && useradd --system --uid 10001 --gid movierec --home-dir /home/movierec --create-home movierec
COPY --from=build /opt/movierec /opt/movierec
ENV PATH=/opt/movierec/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001
WORKDIR /home/movierec
ENTRYPOINT ["movierec"]
CMD ["--help"]
