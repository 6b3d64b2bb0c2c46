# syntax=docker/dockerfile:1
#
# pvc-evictor image: the daemon and, through its "probe" subcommand, the init
# container's volume check. Build from the repository root:
#   docker build -t pvc-evictor:0.1.0 .
#
# Both stages use the same Debian release, so the libraries the binary was
# linked against in the build stage are the ones installed in the run stage.

ARG DEBIAN_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential \
      cmake \
      pkg-config \
      libspdlog-dev \
      libfmt-dev \
      robin-map-dev \
      libcap-ng-dev \
      libcli11-dev \
      nlohmann-json3-dev \
      libcpp-httplib-dev \
      cppzmq-dev \
      libzmq3-dev \
      libmsgpack-cxx-dev \
      libssl-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Tests and benchmarks are built and run by CI, not in the image. "-j" takes
# the core count explicitly: without a number make starts unlimited jobs,
# which can run a small builder out of memory.
RUN cmake -S . -B build \
      -DPVC_BUILD_TESTS=OFF \
      -DPVC_BUILD_BENCH=OFF \
      -DCMAKE_BUILD_TYPE=Release \
 && cmake --build build -j "$(nproc)" \
 && install -D -m 0755 -s build/pvc-evictor /usr/local/bin/pvc-evictor

# ---------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE}

# Shared libraries only: spdlog and fmt (logging), libcap-ng (dropping
# capabilities after fanotify is set up), ZeroMQ (BlockRemoved events) and
# cpp-httplib with its TLS library (metrics and health endpoints). CLI11,
# nlohmann-json, robin-map, cppzmq and msgpack-cxx are header-only and need
# nothing at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libspdlog1.10 \
      libfmt9 \
      libcap-ng0 \
      libzmq5 \
      libcpp-httplib0.11 \
      libssl3 \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /usr/local/bin/pvc-evictor /usr/local/bin/pvc-evictor

# Fail the build here, with the missing library's name, rather than at the
# first pod start, if the list above falls behind what the binary links.
RUN if ldd /usr/local/bin/pvc-evictor | grep 'not found'; then exit 1; fi \
 && /usr/local/bin/pvc-evictor --help >/dev/null

# Non-root by default, with a numeric id so that Kubernetes can verify
# runAsNonRoot. The restricted overlay runs as this user (OpenShift assigns
# its own); the privileged overlay sets runAsUser 0, because watch mode
# needs root for its capabilities to take effect.
RUN groupadd --system --gid 65532 evictor \
 && useradd --system --uid 65532 --gid 65532 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin evictor
USER 65532:65532

LABEL org.opencontainers.image.title="pvc-evictor" \
      org.opencontainers.image.description="Keeps a vLLM KV-cache volume below its usage thresholds"

# /metrics, /healthz and /readyz (METRICS_ADDRESS).
EXPOSE 9100

# No arguments: the daemon. "probe ...": the init container's volume check.
ENTRYPOINT ["/usr/local/bin/pvc-evictor"]
