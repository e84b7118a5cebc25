# One image, saga:latest, with every binary of the workspace; compose.yaml runs each service from it
# with its own `command`. Build: docker compose build (or docker build -t saga:latest .).

# --- build stage: one `cargo build` for all binaries -----------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and the target directory between builds (BuildKit), so
# a code change recompiles only the workspace crates. Every binary (the executables at the top of
# target/release: order-svc, inventory-svc, notification-svc, sagactl, ...) is copied out of the
# cached target directory, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --workspace --bins --locked \
 && mkdir -p /out \
 && find target/release -maxdepth 1 -type f -executable -exec cp {} /out/ \; \
 && ls /out

# --- runtime stage ----------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin saga
COPY --from=build /out/ /usr/local/bin/
USER saga
# Each service sets its own HTTP_ADDR and command in compose.yaml; these are the defaults.
EXPOSE 5001 5002 5003
CMD ["order-svc"]
