#!/usr/bin/env bash
# Installs the distribution's tools that the browser and compose tests drive, when they are missing:
#   - chromium and chromium-driver (crates/agentd/tests/playground.rs drives the playground page with them),
#   - docker-compose 1.29 (crates/agentd/tests/container.rs validates docker-compose.yml; it needs no daemon).
# Idempotent and quiet: nothing is installed when everything is there. Installing needs root and apt-get
# (CI runs as root); otherwise it names the packages to install. Prints `export …` lines for the tests:
#   eval "$(scripts/browser-tools.sh)"      (scripts/test-services.sh start does this for you)
set -euo pipefail

log() { echo "browser-tools: $*" >&2; }

find_bin() { # first executable among the names given
  local n
  for n in "$@"; do
    if command -v "$n" >/dev/null 2>&1; then command -v "$n"; return 0; fi
  done
  return 1
}

missing=()
find_bin chromium chromium-browser >/dev/null || missing+=(chromium)
find_bin chromedriver >/dev/null || [[ -x /usr/lib/chromium/chromedriver ]] || missing+=(chromium-driver)
find_bin docker-compose >/dev/null || missing+=(docker-compose)

if ((${#missing[@]})); then
  if [[ "$(id -u)" = 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # Other test setups on the machine may hold the dpkg lock: wait for it instead of failing.
    apt_get() { apt-get -o DPkg::Lock::Timeout=600 -qq "$@" >/dev/null; }
    if ! apt_get install -y --no-install-recommends "${missing[@]}" 2>/dev/null; then
      apt_get update
      apt_get install -y --no-install-recommends "${missing[@]}"
    fi
  else
    log "missing ${missing[*]}: install them (e.g. sudo apt-get install ${missing[*]}); the tests that need them will fail"
  fi
fi

if chromium=$(find_bin chromium chromium-browser); then echo "export AGENTD_TEST_CHROMIUM=$chromium"; fi
if driver=$(find_bin chromedriver); then
  echo "export AGENTD_TEST_CHROMEDRIVER=$driver"
elif [[ -x /usr/lib/chromium/chromedriver ]]; then
  echo "export AGENTD_TEST_CHROMEDRIVER=/usr/lib/chromium/chromedriver"
fi
if compose=$(find_bin docker-compose); then echo "export AGENTD_TEST_DOCKER_COMPOSE=$compose"; fi
