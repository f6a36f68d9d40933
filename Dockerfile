# SalesPad image: `docker build -t salespad .` (or `docker compose up -d --build`, see README "Docker").
# Two stages: the first compiles the binary with the -dev packages, the second carries only the
# binary and the shared libraries it loads, and runs it as an unprivileged user.
# Validated statically by tests/packaging/check_packaging.sh (make test); keep the runtime package
# list in step with the binary's libraries: that script compares them.

# ---- build -------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      gcc make cmake pkg-config \
      libmicrohttpd-dev libjansson-dev libsqlite3-dev libpq-dev libhiredis-dev libssl-dev \
      libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the binary is built from (migrations, the dashboard's files and the API description
# are compiled in); tests stay out (SP_TESTS=OFF).
COPY CMakeLists.txt ./
COPY cmake/ cmake/
COPY migrations/ migrations/
COPY ui/ ui/
COPY docs/openapi.json docs/
COPY src/ src/
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSP_TESTS=OFF \
 && cmake --build /build --target salespad -j"$(nproc)" \
 && /build/salespad --version

# ---- runtime -----------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libmicrohttpd12 libjansson4 libsqlite3-0 libpq5 libhiredis0.14 libssl3 libcurl4 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 salespad \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/salespad --no-create-home \
      --shell /usr/sbin/nologin salespad \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/salespad
COPY --from=build /build/salespad /usr/local/bin/salespad
# The data directory holds the embedded SQLite database (the default DATABASE_URL); mount a
# volume here when running without PostgreSQL.
WORKDIR /var/lib/salespad
ENV HOST=0.0.0.0 \
    PORT=3000 \
    DATABASE_URL=sqlite:/var/lib/salespad/salespad.db
EXPOSE 3000
USER 10001:10001
# GET /health over bash's /dev/tcp: no curl in the image. /health needs no API key.
# (`salespad worker` serves no HTTP: docker-compose.yml disables this check for it.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-3000} && printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["salespad"]
CMD ["serve"]
