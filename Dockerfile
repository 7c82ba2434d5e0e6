# segshield in a container: the CLI with the pinned CPU torch.
#   docker build -t segshield .
#   docker run --rm -v "$PWD:/work" segshield audit --data /work/data --out /work/out
# Built on a normal machine: torch comes from PyTorch's CPU index (PyPI's torch is the CUDA
# build, GBs). TORCH_VERSION must equal the torch pin in pyproject.toml (tests/cli/test_cli_action
# and scripts/docker_steps_check.py check it).
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Optional extras, comma list: docker build --build-arg EXTRAS=medical,mlflow -t segshield .
ARG EXTRAS=""

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SEGSHIELD_CACHE_DIR=/tmp/segshield-cache

# torch first, in its own layer: it is most of the image and changes least.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /opt/segshield
COPY pyproject.toml README.md ./
COPY src ./src
# The constraint keeps the CPU torch above: no dependency may replace it.
RUN echo "torch==${TORCH_VERSION}" > /tmp/torch.txt \
    && pip install -c /tmp/torch.txt ".${EXTRAS:+[${EXTRAS}]}" \
    && rm /tmp/torch.txt \
    && segshield --help > /dev/null

# Not root: the audit writes only into --out and the engine cache ($SEGSHIELD_CACHE_DIR, /tmp,
# so `docker run --user "$(id -u):$(id -g)"` works too).
RUN useradd --create-home --uid 1000 segshield
USER segshield
WORKDIR /work

ENTRYPOINT ["segshield"]
CMD ["audit", "--help"]
