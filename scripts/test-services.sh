#!/usr/bin/env bash
# Starts (or stops) the real servers the test suite talks to, on loopback, without Docker:
#   PostgreSQL 15 from the machine's binaries (initdb into a temp dir, run as the `postgres` user when root),
#   the S3 / GCS stand-ins through scripts/storage-services.sh when it exists, and the browser and compose
#   tools (Chromium, chromedriver, docker-compose) through scripts/browser-tools.sh.
# `start` prints `export …` lines for the tests; `eval "$(scripts/test-services.sh start)"`.
# State lives in ${AGENTD_TEST_STATE:-target/test-services}; `stop` stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${AGENTD_TEST_STATE:-$PWD/target/test-services}
cmd=${1:-start}

pg_bin() {
  for d in /usr/lib/postgresql/*/bin /usr/local/bin /usr/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
  done
  echo "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql" >&2; exit 1
}

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_pg() {
  local bin; bin=$(pg_bin)
  if [ -f "$STATE/pg.port" ] && as_pg "$bin/pg_ctl" -D "$STATE/pg/data" status >/dev/null 2>&1; then return; fi
  rm -rf "$STATE/pg"; mkdir -p "$STATE/pg"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
    chown -R postgres:postgres "$STATE/pg"
    # initdb needs every parent directory to be traversable by the postgres user.
    local d="$STATE"; while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
  fi
  local port; port=$(free_port)
  as_pg "$bin/initdb" -D "$STATE/pg/data" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >"$STATE/pg/initdb.log" 2>&1 \
    || { cat "$STATE/pg/initdb.log" >&2; exit 1; }
  as_pg "$bin/pg_ctl" -D "$STATE/pg/data" -l "$STATE/pg/server.log" -w -t 30 \
    -o "-p $port -k $STATE/pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
    start >/dev/null || { cat "$STATE/pg/server.log" >&2; exit 1; }
  echo "$port" > "$STATE/pg.port"
}

case "$cmd" in
  start)
    mkdir -p "$STATE"
    start_pg >&2
    echo "export AGENTD_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$(cat "$STATE/pg.port")/postgres"
    if [ -x scripts/storage-services.sh ]; then
      scripts/storage-services.sh start "$STATE" >&2
      cat "$STATE/storage.env"
    fi
    if [ -x scripts/browser-tools.sh ]; then scripts/browser-tools.sh; fi
    ;;
  stop)
    if [ -d "$STATE/pg/data" ]; then as_pg "$(pg_bin)/pg_ctl" -D "$STATE/pg/data" -m fast -w stop >/dev/null 2>&1 || true; fi
    rm -f "$STATE/pg.port"
    if [ -x scripts/storage-services.sh ]; then scripts/storage-services.sh stop "$STATE" >&2 || true; fi
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
