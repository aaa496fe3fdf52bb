# The funnelpulse worker / simulator image used by docker-compose.yml and deploy/k8s.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
# jemalloc: the worker re-executes itself under it (funnelpulse/malloc.py, FUNNELPULSE_ALLOCATOR)
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2 \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md LICENSE requirements/runtime.txt ./
COPY funnelpulse ./funnelpulse
COPY streams ./streams
COPY metrics ./metrics
# The locked versions, hashes checked; then the package itself without re-resolving.
RUN pip install --no-cache-dir --require-hashes --no-deps -r runtime.txt \
 && pip install --no-cache-dir --no-deps --no-build-isolation . && useradd --uid 10001 --create-home funnelpulse
USER 10001
ENV FUNNELPULSE_DATA_DIR=/home/funnelpulse/data
EXPOSE 6066
ENTRYPOINT ["funnelpulse"]
CMD ["worker"]
