# fleet: one image with all three binaries (fleet-balancer, fleet-agent,
# fleetctl). Build: docker build -t fleet .
#
# The agent loads libcuda and NVRTC at run time (cudarc, dynamic loading) and
# offers CUDA workloads only when both are present. The NVIDIA container
# toolkit mounts libcuda into the container, but NVRTC comes with the CUDA
# toolkit, not the driver: for `cuda.vector_add` build the runtime stage on a
# CUDA runtime image, e.g.
#   docker build --build-arg RUNTIME_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 -t fleet .
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --bins \
    && install -m 0755 target/release/fleet-balancer target/release/fleet-agent \
       target/release/fleetctl /usr/local/bin/

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /usr/local/bin/fleet-balancer /usr/local/bin/fleet-agent /usr/local/bin/fleetctl /usr/local/bin/
EXPOSE 8000
CMD ["fleet-balancer"]
