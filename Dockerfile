# The comfyfarm image: workers, Flower and producers (the CLI). ComfyUI runs in its own image.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY comfyfarm comfyfarm
COPY tasks tasks
COPY worker worker
COPY producer producer
COPY workflows workflows
COPY simulator simulator
RUN pip install --no-cache-dir '.[s3]' && useradd --create-home farm \
    && mkdir /output && chown farm /output
USER farm
ENTRYPOINT ["comfyfarm"]
