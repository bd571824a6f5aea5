# The component image: the base_image of every Kubeflow pipeline step, and only what the steps
# need. Hermetic: the build context is a wheelhouse made on the build machine by `make wheels`
# (the project's wheel and the pinned wheels of the pipeline's dependencies), installed with no
# package index; `make images` builds it:
#   docker build -f images/components.Dockerfile -t movierec/components:TAG build/images/components
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
LABEL org.opencontainers.image.title="movierec-components"
RUN groupadd --system --gid 10001 movierec \
 && useradd --system --uid 10001 --gid movierec --home-dir /home/movierec --create-home movierec
COPY --from=build /opt/movierec /opt/movierec
# implicit's ALS and BPR are built with OpenMP: the steps need its runtime (libgomp1), which the slim
# Python image lacks. A base that has it already (the tests' image from Debian packages) installs
# nothing; the version is the base's Debian release's.
# hadolint ignore=DL3008
RUN python -c "import ctypes.util, sys; sys.exit(ctypes.util.find_library('gomp') is None)" \
 || (apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*)
# The steps' commands do not install kfp (`install_kfp_package=False` in components/steps.py): it
# is installed here, and PIP_NO_INDEX keeps any pip run from reaching for an index. Runs with a
# read-only root file system: everything written goes to /tmp and the pipeline root's volume.
ENV PATH=/opt/movierec/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_INDEX=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/tmp
USER 10001
WORKDIR /tmp
# No ENTRYPOINT: Kubeflow gives each step's command (kfp.local's DockerRunner gives it as the CMD).
CMD ["movierec", "--help"]
