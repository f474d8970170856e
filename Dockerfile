# syntax=docker/dockerfile:1
# check=skip=InvalidDefaultArgInFrom
# Every service's image, one at a time: the shared package, one service and the third-party
# packages that service needs at the versions of requirements.lock, nothing else.
# Build from the repository root, naming the service:
#   docker build --build-arg SERVICE=orders -t commerce/orders .
# SERVICE is gateway, basket, orders, shipping, payments or customers. What differs between them
# (the port and the names of their settings) is in the short stage named after each, at the end.
ARG PYTHON_IMAGE=python:3.11-slim
# No default, on purpose: without it the last FROM names no stage and the build stops there
# (which is what the skipped build check above would warn about).
ARG SERVICE

FROM ${PYTHON_IMAGE} AS builder
ARG SERVICE
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Third-party wheels first, checked against the lock's hashes; this layer is rebuilt only when
# the lock changes. The runtime stage takes from them only what its service depends on.
COPY requirements.lock ./
RUN pip wheel --wheel-dir /wheels --require-hashes -r requirements.lock
COPY pyproject.toml ./
COPY shared/ shared/
COPY services/${SERVICE}/ services/${SERVICE}/
# Their dependencies are the wheels above: building the local packages resolves nothing again.
RUN pip wheel --wheel-dir /wheels --no-deps . ./services/${SERVICE}

FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SERVICE=${SERVICE}
# The orders service prints invoices with a font that has any shopper's name in it.
RUN if [ "$SERVICE" = orders ]; then \
        apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
        && rm -rf /var/lib/apt/lists/*; \
    fi
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
# Offline, from the builder's wheels only, bind-mounted so that they never become a layer of
# the image: no compiler, no source tree and no network here.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels commerce-${SERVICE}
USER 10001:10001
# aiohttp drains on SIGTERM: stops accepting, finishes in-flight requests, then closes resources.
STOPSIGNAL SIGTERM
# The port is the service's own setting (<SERVICE>_PORT), so that it follows an override.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ[os.environ['SERVICE'].upper() + '_PORT']; urllib.request.urlopen(f'http://127.0.0.1:{port}/health/ready', timeout=2)"]

# --- what differs between the services -----------------------------------------------------------
# Each listens on every interface inside the container (the settings default to loopback, for
# local runs). Exec form: python is PID 1 and receives SIGTERM itself; `migrate` and `seed`
# override the command (python -m <service> migrate).

FROM runtime AS gateway
ENV GATEWAY_HOST=0.0.0.0 GATEWAY_PORT=8000 GATEWAY_LOG_JSON=true
EXPOSE 8000
CMD ["python", "-m", "gateway"]

FROM runtime AS basket
ENV BASKET_HOST=0.0.0.0 BASKET_PORT=8001 BASKET_LOG_JSON=true
EXPOSE 8001
CMD ["python", "-m", "basket"]

FROM runtime AS orders
ENV ORDERS_HOST=0.0.0.0 ORDERS_PORT=8002 ORDERS_LOG_JSON=true
EXPOSE 8002
CMD ["python", "-m", "orders"]

FROM runtime AS shipping
ENV SHIPPING_HOST=0.0.0.0 SHIPPING_PORT=8003 SHIPPING_LOG_JSON=true
EXPOSE 8003
CMD ["python", "-m", "shipping"]

FROM runtime AS payments
ENV PAYMENTS_HOST=0.0.0.0 PAYMENTS_PORT=8004 PAYMENTS_LOG_JSON=true
EXPOSE 8004
CMD ["python", "-m", "payments"]

FROM runtime AS customers
ENV CUSTOMERS_HOST=0.0.0.0 CUSTOMERS_PORT=8005 CUSTOMERS_LOG_JSON=true
EXPOSE 8005
CMD ["python", "-m", "customers"]

# The image: the stage of the service named by SERVICE (BuildKit builds only the stages it uses).
FROM ${SERVICE}
