# One image for every syncjobs process: the compose file picks `syncjobs api` or `syncjobs worker`;
# the worker spawns the executor (`python -P -m syncjobs.executor`) from the same image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY syncjobs ./syncjobs
COPY shared ./shared
COPY api ./api
COPY worker ./worker
COPY executor ./executor
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app syncjobs

USER syncjobs
EXPOSE 8080
CMD ["syncjobs", "api"]
