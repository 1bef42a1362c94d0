# One image for the goalflow services; docker-compose.yml picks the console script
# (goalflow-config, goalflow-tracker, goalflow-export, goalflow-edge) each container runs.
# The web console's built files are in it too (/opt/goalflow/console): the edge serves them
# when GOALFLOW_CONSOLE_DIR names that directory (docker-compose.yml does).

# The web console, built as `make web` builds it (scripts/build_web.sh): npm ci installs
# exactly package-lock.json's pins (buf, protoc-gen-es, TypeScript, esbuild, Preact,
# ECharts), buf generates the browser client from protos/ with the local plugin, then the
# sources are type-checked and bundled. Only web/dist/console leaves this stage: no Node.js
# and no node_modules in the image.
FROM node:22-slim AS web
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY buf.yaml ./
COPY protos ./protos
COPY web ./web
COPY scripts/build_web.sh ./scripts/build_web.sh
RUN node_modules/.bin/buf generate --template web/buf.gen.yaml \
 && scripts/build_web.sh --console-only \
 && test -s web/dist/console/index.html && test -s web/dist/console/console.js

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml ./
COPY requirements ./requirements
COPY protos ./protos
COPY scripts ./scripts
COPY libs/common ./libs/common
COPY services ./services
# Only the runtime, at the versions requirements/runtime.txt pins (`make lock`): nothing is
# resolved at build time and no dev tool (the CLI's click and rich, nx-27017, aiosmtpd, test
# tools) ships. The package is the root `goalflow` distribution, goalflow_common and the three
# services; libs/client and libs/devtools are distributions of their own, not copied here.
# grpcio-tools, pinned against the runtime's grpcio and protobuf (requirements/protos.txt),
# generates the protobuf code and is removed again. The package itself goes in with --no-deps
# once its generated code exists, and every console script it has (the services and
# goalflow-keys) is imported so that a broken image fails here, not at start.
RUN python -m venv /opt/goalflow \
 && /opt/goalflow/bin/pip install --requirement requirements/runtime.txt \
    --requirement requirements/protos.txt \
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
COPY --from=web /src/web/dist/console /opt/goalflow/console
# GOALFLOW_GRPC_HOST: inside a container the servers must listen on every interface (the
# default, 127.0.0.1, is unreachable from other containers); it binds the export HTTP port
# and the edge's port too.
ENV PATH=/opt/goalflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GOALFLOW_GRPC_HOST=0.0.0.0
USER 10001:10001
CMD ["goalflow-config"]
