# The predictor image: the KServe model server for the stable and canary model versions, and only
# what serving needs. Hermetic: the build context is a wheelhouse made on the build machine by
# `make wheels` (the project's wheel and the pinned wheels of its serving dependencies), installed
# with no package index; `make images` builds it:
#   docker build -f images/predictor.Dockerfile -t movierec/predictor:TAG build/images/predictor
# BASE_IMAGE defaults to the pinned official Python image; any Debian-based image with Python 3.11
# and its venv module will do (the tests use one made from Debian packages).
ARG BASE_IMAGE=python:3.11.7-slim-bookworm

FROM ${BASE_IMAGE} AS build
# The dependencies first, in a layer of their own: a code change rebuilds only the last step.
COPY deps/ /wheels/deps/
RUN python -m venv /opt/movierec \
 && /opt/movierec/bin/pip install --no-cache-dir --no-index --no-deps /wheels/deps/*.whl
COPY movierec-*.whl /wheels/
RUN /opt/movierec/bin/pip install --no-cache-dir --no-index --no-deps /wheels/movierec-*.whl \
 && /opt/movierec/bin/pip check

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="movierec-predictor"
RUN groupadd --system --gid 10001 movierec \
 && useradd --system --uid 10001 --gid movierec --home-dir /home/movierec --create-home movierec
COPY --from=build /opt/movierec /opt/movierec
# Runs with a read-only root file system: everything written goes to /tmp (an emptyDir on a cluster).
ENV PATH=/opt/movierec/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_INDEX=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001
WORKDIR /home/movierec
EXPOSE 8080
ENTRYPOINT ["python", "-m", "predictor"]
