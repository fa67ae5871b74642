# users-gateway: a static-ish release binary on a slim Debian base.
# Build: docker build -t users-gateway .
# Run:   docker run -p 8080:8080 -e THOUGHTINDUSTRIES_BASE_URL=… -e THOUGHTINDUSTRIES_API_KEY=… users-gateway
#        docker run -p 8080:8080 users-gateway --demo
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
# rustls verifies upstream certificates against the system store.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home gateway
COPY --from=build /src/target/release/users-gateway /usr/local/bin/users-gateway
USER gateway
ENV GATEWAY_LISTEN_ADDR=0.0.0.0:8080 \
    GATEWAY_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/users-gateway"]
