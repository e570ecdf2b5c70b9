# share-scheduler: slim image, non-root, health-checked.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scheduler ./scheduler
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SHARE_SCHEDULER_CONFIG=/etc/share-scheduler/schedule.yaml \
    SHARE_SCHEDULER_MIGRATIONS=/app/migrations
COPY --from=build /install /usr/local
WORKDIR /app
COPY migrations ./migrations
COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN useradd --system --uid 10001 --home-dir /var/lib/share-scheduler --create-home share-scheduler \
    && chmod 0755 /usr/local/bin/docker-entrypoint.sh
USER share-scheduler
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["run"]
