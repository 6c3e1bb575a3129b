# chatflow: every binary in one small runtime image.
#   docker build -t chatflow .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --features chatflow/dynamodb,chatflow/s3 -p chatflow -p ingest -p router -p persister -p indexer -p archiver -p notifier \
 && mkdir /out \
 && cp target/release/chatflow target/release/ingest target/release/router target/release/persister target/release/indexer target/release/archiver target/release/notifier /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/chatflow chatflow
COPY --from=build /out/ /usr/local/bin/
USER chatflow
WORKDIR /var/lib/chatflow
ENV RUST_LOG=info
CMD ["chatflow", "--help"]
