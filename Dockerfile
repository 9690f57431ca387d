# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run from a slim Debian image as a non-root user.
# No credentials are baked in: the master key comes from the environment, or (single --role=all
# service only) is generated into the /data volume on first start.

FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY vendor ./vendor
COPY src ./src
COPY migrations ./migrations
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked && cp target/release/relayit /usr/local/bin/relayit

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data relayit \
    && mkdir -p /data && chown relayit:relayit /data
COPY --from=build /usr/local/bin/relayit /usr/local/bin/relayit
USER relayit
WORKDIR /data
ENV RELAYIT_DATA_DIR=/data \
    RELAYIT_SERVER__BIND=0.0.0.0:8080 \
    RELAYIT_LOG__FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["relayit"]
CMD ["serve", "--role=all"]
