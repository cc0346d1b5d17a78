# One image for the control plane (tulle control), the proxy sidecar (tulle proxy) and
# the init container (tulle init, which needs iptables). Built from this package:
#   docker build -t tulle/tulle:0.1.0 .
# The chart (deploy/helm/tulle) runs it as UID 2102 (the proxy's UID, excluded from
# capture); the init container runs it as root with NET_ADMIN and NET_RAW.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY deploy/helm ./deploy/helm
# The chart ships inside the package (src/tulle/kube/chart links to deploy/helm/tulle).
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 2102 --no-create-home --shell /usr/sbin/nologin tulle
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 2102
EXPOSE 4140 4143 4191 8086 8443
ENTRYPOINT ["tulle"]
CMD ["--help"]
