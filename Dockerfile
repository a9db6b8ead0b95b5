# The comfyfarm image: workers, Flower, the simulator and the producer CLI (`comfyfarm ...`).
# ComfyUI runs in its own image, one container per GPU (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
# The image serves every role but the embedded Valkey: core dependencies plus the role extras.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
x = p['optional-dependencies']; \
print('\n'.join(p['dependencies'] + [d for e in ('worker', 'sim', 'flower', 's3', 'gateway') for d in x[e]]))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# comfyfarm/<part> are symlinks to the top-level folders beside it (one import namespace).
COPY comfyfarm comfyfarm
COPY tasks tasks
COPY producer producer
COPY worker worker
COPY comfy comfy
COPY storage storage
COPY workflows workflows
COPY simulator simulator
COPY gateway gateway
RUN pip install --no-deps . \
    && useradd --create-home --uid 1000 farm \
    && mkdir /output && chown farm:farm /output

# Never root: the worker downloads whatever ComfyUI produced, Flower serves HTTP.
USER farm
# Flower's port (workers and the CLI listen on nothing; the simulator on its --port).
EXPOSE 5555
ENTRYPOINT ["comfyfarm"]
CMD ["--help"]
