# One image for the migrate, worker, beat and web services of docker-compose.yml.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY setup.cfg pyproject.toml README.md manage.py ./
COPY orchestrator ./orchestrator
COPY workers ./workers
COPY commands ./commands
RUN pip install .
CMD ["orchestrator", "worker"]
