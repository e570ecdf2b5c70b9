# share-scheduler: slim image, non-root, health-checked, JSON logs on stdout.
# tests/deploy/test_image.py reproduces the build stage from this file's COPY lines.
FROM python:3.11-slim AS build
WORKDIR /src
# pyproject.toml lists migrations/ as data files: the wheel cannot be built without them.
COPY pyproject.toml README.md LICENSE ./
COPY scheduler ./scheduler
COPY migrations ./migrations
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
# The migrations are installed with the package (<prefix>/share/share-scheduler/migrations).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SHARE_SCHEDULER_CONFIG=/etc/share-scheduler/schedule.yaml \
    SHARE_SCHEDULER_MIGRATIONS=/usr/local/share/share-scheduler/migrations \
    SHARE_SCHEDULER_LOG_STREAM=stdout
COPY --from=build /install /usr/local
COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN groupadd --system --gid 10001 share-scheduler \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/share-scheduler \
       --create-home share-scheduler \
    && chmod 0755 /usr/local/bin/docker-entrypoint.sh
WORKDIR /var/lib/share-scheduler
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
# Probes /livez on the port the schedule file configures (webhooks.listen).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "scheduler.healthcheck"]
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["run"]
