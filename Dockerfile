# threadkeeper: one image for every process type; the command picks the role.
#   docker run --env-file .env -p 3000:3000 threadkeeper                        Slack (HTTP mode on PORT, or Socket Mode)
#   docker run --env-file .env threadkeeper python -m bot discord              Discord
#   docker run --env-file .env threadkeeper python -m bot janitor              retention
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=3000

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin threadkeeper
WORKDIR /app

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
COPY bench ./bench
RUN pip install .

USER threadkeeper
EXPOSE 3000
CMD ["python", "-m", "bot", "slack"]
