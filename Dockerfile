# The Knitfab server image: `knitfab serve` with the Kubernetes runner.
#
#   make wheels       # once, with network: the pinned dependencies into build/wheels
#   make image        # docker build --network=none: nothing is downloaded but the base image
#   minikube image build -t knitfab:latest .   # or build inside minikube (after make wheels)
#
# Dependencies come only from build/wheels (requirements/server.txt, pinned; --no-index): the
# build is repeatable and works offline once the base image is there. The base image is pinned by
# tag; pin it by digest (python:3.11-slim-bookworm@sha256:...) for byte-for-byte rebuilds.
#
# The manifests run the server as root with every capability dropped but CHOWN, DAC_OVERRIDE and
# FOWNER, and a read-only root filesystem: it must read and delete what workers write as any user
# (knitfab/ownership.py), and it writes only under the data and database volumes and /tmp.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_NO_INDEX=1

COPY requirements/server.txt /tmp/requirements.txt
COPY build/wheels/ /tmp/wheels/
RUN pip install --no-cache-dir --find-links /tmp/wheels -r /tmp/requirements.txt \
    && pip install --no-cache-dir --no-deps --find-links /tmp/wheels knitfab \
    && rm -rf /tmp/wheels /tmp/requirements.txt \
    && knitfab --version \
    && install -d -m 0755 /var/lib/knitfab /var/lib/knitfab-db

WORKDIR /var/lib/knitfab
EXPOSE 8080 30503

# For `docker run`; Kubernetes uses the probes in the manifest instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/api/healthz', timeout=4)"]

ENTRYPOINT ["knitfab"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--data-dir", "/var/lib/knitfab", "--db", "/var/lib/knitfab-db/knitfab.db", "--runner", "kubernetes"]
