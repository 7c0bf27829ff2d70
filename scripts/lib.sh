# shellcheck shell=bash
# Shared by scripts/demo and .ci/run: install what chute needs on a fresh Debian 12
# machine, make the local base images, and start/stop the real services the
# pipeline talks to. Every step is idempotent (see ../shared/notes/machine.md).

CHUTE_ROOT="${CHUTE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
T0=${T0:-$(date +%s)}
step() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }

export DEBIAN_FRONTEND=noninteractive
PIDS=()

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# ------------------------------------------------------------------ packages
install_packages() {
  local pkgs=(podman buildah runc catatonit busybox-static debootstrap docker-registry postgresql git curl python3-venv)
  local pkgs_nr=(chromium chromium-driver prometheus)
  local missing=()
  for p in "${pkgs[@]}" "${pkgs_nr[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    step "apt install: ${missing[*]}"
    local apt=($SUDO apt-get -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 -y -q)
    "${apt[@]}" update >/dev/null
    "${apt[@]}" install "${pkgs[@]}" >/dev/null
    "${apt[@]}" install --no-install-recommends "${pkgs_nr[@]}" >/dev/null
  fi
}

# ------------------------------------------------------------------ podman
# podman needs runc and ulimits that work inside these VMs.
configure_podman() {
  local conf="${CHUTE_CONTAINERS_CONF:-/etc/chute/containers.conf}"
  if [ ! -f "$conf" ]; then
    $SUDO mkdir -p "$(dirname "$conf")"
    $SUDO tee "$conf" >/dev/null <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024","nproc=1024:1024"]
[engine]
runtime = "runc"
EOF
  fi
  export CONTAINERS_CONF="$conf"
}

# ------------------------------------------------------------------ base images
# No public registry is reachable: base images come from debootstrap and busybox-static.
# Local images may carry any registry name, so the Wikimedia names real configs use work too.
make_base_images() {
  local work
  if ! podman image exists localhost/debian:bookworm; then
    step "debootstrap bookworm -> localhost/debian:bookworm (about 40 s, once per machine)"
    work="$(mktemp -d -t chute-rootfs.XXXXXX)"
    $SUDO debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
      || { tail -20 "$work/debootstrap.log"; return 1; }
    printf 'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
      | $SUDO tee "$work/rootfs/etc/apt/sources.list" >/dev/null
    $SUDO rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
    $SUDO tar --numeric-owner -C "$work/rootfs" -c . | podman import \
      --change 'CMD ["/bin/bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - localhost/debian:bookworm >/dev/null
    $SUDO rm -rf "$work"
  fi
  if ! podman image exists localhost/busybox:stable; then
    step "busybox-static -> localhost/busybox:stable"
    work="$(mktemp -d -t chute-bb.XXXXXX)"
    local bb="$work/root"
    mkdir -p "$bb" && (cd "$bb" && mkdir -p bin etc tmp && chmod 1777 tmp)
    cp /bin/busybox "$bb/bin/busybox"
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$bb/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' > "$bb/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$bb/etc/group"
    tar --numeric-owner -C "$bb" -c . | podman import --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' \
      - localhost/busybox:stable >/dev/null
    rm -rf "$work"
  fi
  # Aliases for the names that real Wikimedia configs use.
  local alias
  for alias in docker-registry.wikimedia.org/bookworm:latest docker-registry.wikimedia.org/bookworm; do
    podman image exists "$alias" || podman tag localhost/debian:bookworm "$alias"
  done
}

# ------------------------------------------------------------------ python
install_python() {
  cd "$CHUTE_ROOT"
  if [ ! -x .venv/bin/python ]; then
    step "python venv"
    python3 -m venv .venv
  fi
  local stamp=.venv/.chute-installed
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    step "pip install chute and its test dependencies"
    # editable_mode=compat: a plain path entry instead of setuptools' import hook, which costs every
    # `chute` process 10-40 ms at start (bench/README.md, "chute blubber as a fresh process")
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import chute" && touch "$stamp"
  fi
  # PYTHONDONTWRITEBYTECODE may be set on these machines: compile once so that every fresh
  # `chute` process does not recompile its modules.
  .venv/bin/python -m compileall -q chute >/dev/null || true
}

wait_http() {  # url, seconds
  local url=$1 n=$(( ${2:-30} * 10 ))
  for _ in $(seq 1 "$n"); do curl -sf -o /dev/null "$url" && return 0; sleep 0.1; done
  echo "timeout waiting for $url" >&2; return 1
}

# ------------------------------------------------------------------ services
# STATE must be set (a temp dir the postgres user can reach).
start_registry() {  # port
  local port=${1:-15000}
  cat > "$STATE/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $STATE/registry}
  delete: {enabled: true}
http: {addr: "127.0.0.1:$port"}
EOF
  docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$port/v2/" 20
  export CHUTE_TEST_REGISTRY="http://127.0.0.1:$port"
}

start_postgres() {  # port
  local port=${1:-55432}
  local pgbin=/usr/lib/postgresql/15/bin
  mkdir -p "$STATE/pg"; chown postgres:postgres "$STATE/pg"
  runuser -u postgres -- "$pgbin/initdb" -D "$STATE/pg/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$STATE/pg/data" -l "$STATE/pg/server.log" -w -t 30 \
    -o "-p $port -k $STATE/pg -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=200" start >/dev/null
  runuser -u postgres -- "$pgbin/createdb" -h 127.0.0.1 -p "$port" ci
  export CHUTE_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/ci"
}

stop_services() {
  set +e
  [ -n "${STATE:-}" ] && [ -d "$STATE/pg/data" ] && runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$STATE/pg/data" -m fast -w stop >/dev/null 2>&1
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; done
}
