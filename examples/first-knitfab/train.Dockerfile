# The training image for Knitfab on Kubernetes:
#   docker build -t <node>:30503/knitfab-first-train:v1.0 -f examples/first-knitfab/train.Dockerfile examples/first-knitfab
FROM python:3.11-slim
WORKDIR /work
RUN pip install --no-cache-dir numpy==2.4.6 torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple
COPY scripts/ .
ENTRYPOINT ["python", "-u", "train.py"]
CMD ["--dataset", "/in/dataset", "--save-to", "/out/model"]
