# dicomweb-gw container image (used by the Helm chart in helm/dicomweb-gw).
#   docker build -t ghcr.io/example/dicomweb-gw:0.1.0 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY dicomweb_gw ./dicomweb_gw
RUN pip install . && rm -rf /src

# Fixed numeric ids, matching the chart's podSecurityContext (runAsUser 10001).
RUN groupadd --system --gid 10001 dicomweb \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/dicomweb --create-home dicomweb \
    && mkdir -p /var/cache/dicomweb-gw \
    && chown 10001:10001 /var/cache/dicomweb-gw
USER 10001:10001
WORKDIR /home/dicomweb

ENV DICOMWEB_GW_CACHE_DIR=/var/cache/dicomweb-gw \
    DICOMWEB_GW_LOG_FORMAT=json
VOLUME ["/var/cache/dicomweb-gw"]
# HTTP, and the storage SCP that receives C-MOVE sub-operations.
EXPOSE 8080 11113

ENTRYPOINT ["dicomweb-gw"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
