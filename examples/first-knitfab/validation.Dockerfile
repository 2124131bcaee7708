# The validation image for Knitfab on Kubernetes:
#   docker build -t <node>:30503/knitfab-first-validation:v1.0 -f examples/first-knitfab/validation.Dockerfile examples/first-knitfab
FROM python:3.11-slim
WORKDIR /work
RUN pip install --no-cache-dir numpy==2.4.6 torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple
COPY scripts/ .
ENTRYPOINT ["python", "-u", "validation.py", "--dataset", "/in/dataset", "--model", "/in/model/model.pth"]
