# The Knitfab server image: `knitfab serve` with the Kubernetes runner.
#
#   docker build -t knitfab:latest .            # or: minikube image build -t knitfab:latest .
#
# manifests/knitfab.yaml runs it as UID/GID 10001 (the user below) with a read-only root
# filesystem: the server writes only under --data-dir (a PVC) and /tmp (an emptyDir).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY setup.cfg pyproject.toml README.md knitfab.py ./
COPY knitfab/ knitfab/
COPY knit/ knit/
# The source stays out of the final filesystem: only the installed package is used.
RUN pip install --no-cache-dir ".[k8s]" \
    && cd / && rm -rf /src \
    && knitfab --version

# A fixed, unprivileged user; the manifest's runAsUser/runAsGroup/fsGroup are these numbers.
RUN groupadd --system --gid 10001 knitfab \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/knitfab --no-create-home \
       --shell /usr/sbin/nologin knitfab \
    && install -d -o 10001 -g 10001 -m 2775 /var/lib/knitfab

USER 10001:10001
WORKDIR /var/lib/knitfab
EXPOSE 8080

# For `docker run`; Kubernetes uses the probes in the manifest instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/api/healthz', timeout=4)"]

ENTRYPOINT ["knitfab"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--data-dir", "/var/lib/knitfab", "--runner", "kubernetes"]
