# One image for the API and the workers (the compose file picks the command).
# The PyPI torch wheel bundles the CUDA runtime, so a slim Python base serves GPU hosts too;
# the host needs only the NVIDIA driver and the container toolkit.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LTH_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY lth_core ./lth_core
COPY store ./store
COPY service ./service
COPY worker ./worker
COPY cli ./cli
RUN pip install . && useradd --create-home --uid 1000 lth && mkdir -p /data && chown lth /data

USER lth
VOLUME ["/data"]
EXPOSE 8000
CMD ["lth", "api", "--host", "0.0.0.0", "--port", "8000"]
