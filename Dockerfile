# cdn-preheat container: the queue worker by default, any command on demand
# (`serve --host 0.0.0.0` for the HTTP API).
#
#   docker build -t cdn-preheat .
#   docker run --rm -e TENCENT_SECRET_ID -e TENCENT_SECRET_KEY -e CDN_HOST \
#       -v cdn-preheat-data:/data cdn-preheat push ep-101 https://origin.example.com/ep101/master.m3u8
#
# docs/container.md describes the image, compose.yaml and the health check.
# tests/test_container.py lints this file and replays its pip steps.

FROM python:3.11-slim

# TZ: the old image ran with Asia/Taipei; keep that default, override with
# `--build-arg TZ=...` or at run time with `-e TZ=...`. The python slim images
# already ship Debian's tzdata (/usr/share/zoneinfo), which both the C library
# (TZ) and Python's zoneinfo read, so nothing needs installing for it.
ARG TZ=Asia/Taipei
ENV TZ=${TZ} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# An unprivileged user with a fixed id (so orchestrators can check
# runAsNonRoot) that owns /data: the SQLite ledger and an optional .env.
RUN groupadd --system --gid 10001 cdnpreheat \
    && useradd --system --uid 10001 --gid cdnpreheat --home-dir /data \
        --no-create-home --shell /usr/sbin/nologin cdnpreheat \
    && mkdir /data \
    && chown cdnpreheat:cdnpreheat /data

WORKDIR /build

# Dependencies first, exactly as locked (hashes checked), in their own layer:
# editing the source does not reinstall them. Regenerate the lock with the
# command at its top when pyproject.toml's dependencies change.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock \
    && pip check

# Then the package itself, without touching the dependencies.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build src/cdn_preheat.egg-info

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]

# Healthy = the configuration loads and the ledger (SQLite in /data, or the
# MongoDB of MONGODB_URI) answers a query. Output is dropped; a failure's
# one-sentence reason goes to stderr and shows in `docker inspect`. Any
# failure exits 1: Docker reserves 2, which cdn-preheat uses for bad config.
HEALTHCHECK --interval=60s --timeout=30s --start-period=30s --retries=3 \
    CMD ["sh", "-c", "cdn-preheat health > /dev/null || exit 1"]

# `serve --host 0.0.0.0` (the HTTP API, with its worker) listens here; it
# refuses to start without CDN_PREHEAT_API_TOKENS and CDN_PREHEAT_ALLOWED_ORIGINS.
EXPOSE 8000

ENTRYPOINT ["cdn-preheat"]
CMD ["worker"]
