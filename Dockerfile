# One image for the three goalflow services; docker-compose.yml picks the console script
# (goalflow-config, goalflow-tracker, goalflow-export) each container runs.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml ./
COPY protos ./protos
COPY scripts ./scripts
COPY libs ./libs
COPY services ./services
# The runtime dependencies listed in pyproject.toml are installed together with grpcio-tools
# (a dev dependency, needed only to generate the protobuf code), resolved in one go as in the
# development virtualenv, so the generated code matches the grpcio and protobuf that ship.
# The package itself is built only once its generated code exists; grpcio-tools is removed
# again, and every entry point is imported so that a broken image fails here, not at start.
RUN python -c "import tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print(*project['dependencies'], *(d for d in project['optional-dependencies']['dev'] \
if d.startswith('grpcio-tools')), sep='\n')" > /tmp/requirements.txt \
 && python -m venv /opt/goalflow \
 && /opt/goalflow/bin/pip install --requirement /tmp/requirements.txt \
 && /opt/goalflow/bin/python scripts/gen_protos.py \
 && /opt/goalflow/bin/pip install --no-deps . \
 && /opt/goalflow/bin/pip uninstall --yes grpcio-tools \
 && /opt/goalflow/bin/python -c "from importlib.metadata import distribution; \
[ep.load() for ep in distribution('goalflow').entry_points]; \
import goalflow_common.healthcheck, goalflow_common.pb.goals.v1.export_pb2_grpc"

FROM python:3.11-slim
RUN groupadd --system --gid 10001 goalflow \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin goalflow
COPY --from=build /opt/goalflow /opt/goalflow
# GOALFLOW_GRPC_HOST: inside a container the servers must listen on every interface (the
# default, 127.0.0.1, is unreachable from other containers); it binds the export HTTP port too.
ENV PATH=/opt/goalflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GOALFLOW_GRPC_HOST=0.0.0.0
USER 10001:10001
CMD ["goalflow-config"]
