# Production image of agentd: build in the Rust image, run on a slim Debian.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p agentd && cp target/release/agentd /agentd

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /app agentd
WORKDIR /app
COPY --from=build /agentd /usr/local/bin/agentd
COPY config ./config
USER agentd
EXPOSE 8080
ENV BIND_ADDR=0.0.0.0:8080 LOG_FORMAT=json
ENTRYPOINT ["agentd"]
CMD ["serve"]
