# The agentd image. Dependencies compile in their own cached layer (cargo-chef: the layer is rebuilt when
# Cargo.toml / Cargo.lock change, not when the code does); the binary runs on a slim Debian as an unprivileged
# user that owns /app/var, so `docker run -p 8080:8080 IMAGE` with no configuration starts on the zero-config
# defaults: SQLite and objects under /app/var, a dev token printed, the offline model without OPENAI_API_KEY.
# Same Debian release (bookworm) in both stages, so the binary's glibc matches.

FROM rust:1.95.0-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked -p agentd --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p agentd && cp target/release/agentd /usr/local/bin/agentd

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin agentd \
    && mkdir -p /app/var \
    && chown agentd:agentd /app/var
WORKDIR /app
COPY --from=build /usr/local/bin/agentd /usr/local/bin/agentd
COPY config ./config
USER agentd
# Everything the server writes on its defaults (SQLite file, objects, dev secrets) lives here.
VOLUME ["/app/var"]
# Listen on every interface inside the container. Self-served download URLs (memory/filesystem stores) start
# with PUBLIC_BASE_URL: the address a browser uses, for `-p 8080:8080`; set it when you publish elsewhere.
# Prometheus metrics have a port of their own (9464), reachable by a scraper on the container network; publish it
# only to where Prometheus runs (`-p 127.0.0.1:9464:9464`), never next to the public port. METRICS_ADDR= turns them off.
ENV BIND_ADDR=0.0.0.0:8080 \
    METRICS_ADDR=0.0.0.0:9464 \
    PUBLIC_BASE_URL=http://localhost:8080 \
    LOG_FORMAT=json
EXPOSE 8080 9464
# `agentd healthcheck` asks GET /readyz on BIND_ADDR (loopback for 0.0.0.0): no curl in the image.
HEALTHCHECK --interval=10s --timeout=6s --start-period=15s --retries=3 CMD ["agentd", "healthcheck"]
ENTRYPOINT ["agentd"]
CMD ["serve"]
