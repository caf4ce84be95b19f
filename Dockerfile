# Worker image for Dataflow / portable runners: Beam's Python SDK base image + torch + learnsieve.
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/learnsieve:latest .
# then pass --sdk_container_image=<that tag> (and --experiments=use_runner_v2) to `learnsieve curate`.
# The worker's Beam must be the launcher's: tests/test_deploy.py checks that this version is the
# one the tests ran with and that pyproject.toml's apache-beam range admits it.
ARG BEAM_VERSION=2.78.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION}
ARG BEAM_VERSION

WORKDIR /opt/learnsieve
# PyPI's default Linux torch wheels carry CUDA, so the same image serves CPU and GPU workers.
RUN pip install --no-cache-dir "torch==2.14.1" "torchvision==0.29.1"
COPY pyproject.toml README.md ./
COPY learnsieve ./learnsieve
COPY models ./models
COPY pipeline ./pipeline
COPY configs ./configs
# a wheel install: the one top-level package is learnsieve (pipeline/ and models/ map into it)
# the open_clip extra: open_clip:ARCH:PATH reference/proxy models (models/open_clip_adapter.py)
RUN pip install --no-cache-dir ".[open-clip,dask]" "apache-beam[gcp]==${BEAM_VERSION}" && python -c "import learnsieve.pipeline.run, learnsieve.models, open_clip" \
    && learnsieve --version
# Several SDK harness threads share a worker; keep each torch call from oversubscribing cores.
ENV OMP_NUM_THREADS=4
