# One slim image for every goalflow service; the compose file picks the module to run.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml ./
COPY protos ./protos
COPY scripts ./scripts
COPY libs ./libs
COPY services ./services
RUN pip install --no-cache-dir grpcio-tools \
 && python scripts/gen_protos.py \
 && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 goalflow
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER goalflow
ENV PYTHONUNBUFFERED=1 GOALFLOW_GRPC_HOST=0.0.0.0
ENTRYPOINT ["python", "-m"]
CMD ["config_svc"]
