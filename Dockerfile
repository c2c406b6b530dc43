# mailroute: the whole service in one image.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/mailroute
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
# Editable, so the package finds migrations/ beside it.
RUN pip install --no-cache-dir -e . \
    && useradd --system --home-dir /srv/mailroute --shell /usr/sbin/nologin mailroute \
    && mkdir -p /srv/mailroute/data && chown mailroute /srv/mailroute/data

USER mailroute
# Docker lets unprivileged users bind low ports inside a container (since 20.10).
EXPOSE 25 8000
CMD ["mailroute", "serve"]
