# threadkeeper: one image for every process type; the command picks the role.
#   docker run --env-file .env -p 3000:3000 threadkeeper                        Slack (HTTP mode on PORT, or Socket Mode)
#   docker run --env-file .env threadkeeper python -m bot discord              Discord
#   docker run --env-file .env threadkeeper python -m bot janitor              retention
# The HEALTHCHECK asks GET /healthz on PORT, which the Slack process serves in both modes. Discord serves /healthz
# only on METRICS_PORT: give it the same value as PORT (-e METRICS_PORT=9100 -e PORT=9100). The janitor serves no
# HTTP: run it with --no-healthcheck.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=3000

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin threadkeeper
WORKDIR /app

# Dependencies first, exactly as locked (`bash .ci/lock` regenerates the lock), so a code change reuses this layer.
COPY requirements.txt ./
RUN pip install --require-hashes -r requirements.txt

# Then the bot alone (PIP_NO_DEPS, a build argument only): the lock is the whole dependency set, and pip check fails
# the build when it no longer satisfies pyproject.toml. Only what runs is copied: no tests/, no bench/.
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY adapters ./adapters
ARG PIP_NO_DEPS=1
RUN pip install .
RUN pip check

USER threadkeeper
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${PORT:-3000}/healthz', timeout=4)"
CMD ["python", "-m", "bot", "slack"]
