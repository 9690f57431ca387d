# shellcheck shell=bash
# Shared by scripts/start, scripts/test and .ci/run (source it, do not run it): make sure that
# PostgreSQL and Redis answer at given URLs, installing them with apt and starting private
# instances under data/ when nothing answers there, and that the tools the tests use are
# installed.
#
# PostgreSQL at URL (ensure_postgres), in this order:
#   1. something answers and lets the URL's user in: use it;
#   2. it answers but asks for a password the URL does not give: when it is a Debian cluster
#      (pg_lsclusters) and we are root, give the postgres role the password `postgres` and use
#      the URL with it (a fresh Debian cluster asks for passwords over TCP); when it is our
#      private instance, create the URL's role;
#   3. nothing answers and the host is this machine: install PostgreSQL when its binaries are
#      missing (as root; otherwise print the apt-get command and fail), then start the Debian
#      cluster configured on that port if there is one (pg_ctlcluster), else a private instance
#      in data/postgres (initdb; trust authentication over loopback TCP; run by the `postgres`
#      system user when we are root, since postgres refuses to run as root).
# Redis at URL (ensure_redis): use what answers PONG, else a private redis-server with its data,
# pid file and log in data/redis.
#
# Environment: RELAYIT_SERVICES_DIR (default: data/ at the repository root) holds the private
# instances.

RELAYIT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVICES_DIR=${RELAYIT_SERVICES_DIR:-$RELAYIT_ROOT/data}

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# wait_for NAME SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local name=$1 seconds=$2 i
  shift 2
  for ((i = 0; i < seconds * 2; i++)); do
    if "$@"; then return 0; fi
    sleep 0.5
  done
  return 1
}

# --- packages ---------------------------------------------------------------------------
_apt_updated=""
apt_install() {
  command -v apt-get >/dev/null \
    || die "cannot install $* without apt-get: install them with this system's package manager"
  if [ -z "$_apt_updated" ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    _apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# install_packages PACKAGE...: install them as root; otherwise say how and fail.
install_packages() {
  [ $# -gt 0 ] || return 0
  if is_root; then
    apt_install "$@"
  else
    printf 'error: missing %s. Install with:\n\n    sudo apt-get install %s\n\nthen run %s again.\n' \
      "$*" "$*" "$0" >&2
    exit 1
  fi
}

# --- addresses --------------------------------------------------------------------------
# parse_url URL: sets URL_SCHEME, URL_USER, URL_PASS, URL_HAS_PASS (1 or empty), URL_HOST
# (without IPv6 brackets), URL_PORT (may be empty), URL_PATH and URL_QUERY.
parse_url() {
  local re='^([A-Za-z][A-Za-z0-9+.-]*)://(([^:@/]*)(:([^@/]*))?@)?(\[[^]/]*\]|[^:/?]*)(:([0-9]*))?(/[^?]*)?(\?.*)?$'
  [[ $1 =~ $re ]] || return 1
  URL_SCHEME=${BASH_REMATCH[1]}
  URL_USER=${BASH_REMATCH[3]}
  URL_HAS_PASS=${BASH_REMATCH[4]:+1}
  URL_PASS=${BASH_REMATCH[5]}
  URL_HOST=${BASH_REMATCH[6]}
  URL_HOST=${URL_HOST#[}
  URL_HOST=${URL_HOST%]}
  URL_PORT=${BASH_REMATCH[8]}
  URL_PATH=${BASH_REMATCH[9]}
  URL_QUERY=${BASH_REMATCH[10]}
}

# build_url SCHEME USER PASS HOST PORT PATH QUERY
build_url() {
  local userinfo="" host=$4
  if [ -n "$2$3" ]; then userinfo=$2${3:+:$3}@; fi
  case $host in *:*) host="[$host]" ;; esac
  printf '%s://%s%s%s%s%s' "$1" "$userinfo" "$host" "${5:+:$5}" "$6" "$7"
}

# redact_url URL: the URL with its password replaced by ***.
redact_url() { printf '%s' "$1" | sed -E 's#^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*):[^@/]*@#\1:***@#'; }

is_local_host() {
  case $1 in
    localhost | 127.* | ::1 | 0.0.0.0 | "") return 0 ;;
    *) return 1 ;;
  esac
}

# The address to listen on for a URL host.
listen_host() {
  case $1 in
    localhost | "" | 0.0.0.0) echo 127.0.0.1 ;;
    *) echo "$1" ;;
  esac
}

# port_open HOST PORT
port_open() {
  local host
  host=$(listen_host "$1")
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$2" 2>/dev/null
}

# --- PostgreSQL -------------------------------------------------------------------------
# The directory of the newest installed server binaries (initdb, pg_ctl, postgres), if any.
pg_bindir() {
  local dir
  for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
      echo "$dir"
      return 0
    fi
  done
  dir=$(command -v initdb 2>/dev/null) || return 1
  dir=$(dirname "$(readlink -f "$dir")")
  [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ] && echo "$dir"
}

psql_cmd() {
  if command -v psql >/dev/null; then
    echo psql
  elif [ -n "$(pg_bindir)" ] && [ -x "$(pg_bindir)/psql" ]; then
    echo "$(pg_bindir)/psql"
  else
    return 1
  fi
}

# pg_answers URL: the server lets the URL's user in; its error is left in PG_ERROR.
pg_answers() {
  local psql
  psql=$(psql_cmd) || return 1
  PG_ERROR=$(PGCONNECT_TIMEOUT=5 "$psql" -w "$1" -qtAXc 'SELECT 1' 2>&1 >/dev/null) && return 0
  PG_ERROR=$(printf '%s' "$PG_ERROR" | tr '\n' ' ')
  return 1
}

# pg_responds URL: the server lets the URL in, or at least answers (asking for a password, say).
pg_responds() {
  pg_answers "$1" && return 0
  case $PG_ERROR in
    *password* | *authentication* | *role*) return 0 ;;
    *) return 1 ;;
  esac
}

# The URL of the maintenance database `postgres` on URL's server (the URL's own database may
# not exist yet: relayit creates it).
pg_admin_url() {
  parse_url "$1"
  build_url "$URL_SCHEME" "$URL_USER" "$URL_PASS" "$URL_HOST" "$URL_PORT" /postgres "$URL_QUERY"
}

# run_as USER COMMAND...: COMMAND as USER (the current user needs no switch).
run_as() {
  local user=$1
  shift
  if [ "$user" = "$(id -un)" ]; then
    "$@"
  elif command -v runuser >/dev/null; then
    runuser -u "$user" -- "$@"
  else
    su -s /bin/sh "$user" -c "$(printf '%q ' "$@")"
  fi
}

# The Debian cluster (pg_lsclusters) configured on PORT, as "version name status".
pg_system_cluster() {
  command -v pg_lsclusters >/dev/null || return 1
  pg_lsclusters -h 2>/dev/null | awk -v port="$1" '$3 == port { print $1, $2, $4; found = 1; exit } END { exit !found }'
}

# The private data directory: data/postgres, unless we are root and the postgres user cannot
# reach it (a checkout under /root): then under the postgres user's home.
pg_private_dir() {
  local dir=$SERVICES_DIR/postgres home
  if is_root && [ ! -d "$dir" ] && id postgres >/dev/null 2>&1; then
    mkdir -p "$SERVICES_DIR"
    if ! run_as postgres test -x "$SERVICES_DIR"; then
      home=$(getent passwd postgres | cut -d: -f6)
      dir=${home:-/var/lib/postgresql}/relayit-$(printf '%s' "$SERVICES_DIR" | cksum | cut -d' ' -f1)
    fi
  fi
  echo "$dir"
}

# The port the private instance runs on, when it runs.
pg_private_port() {
  local dir
  dir=$(pg_private_dir)
  [ -r "$dir/postmaster.pid" ] || return 1
  sed -n 4p "$dir/postmaster.pid"
}

# pg_create_role HOST PORT USER PASS: make USER a superuser of the private instance.
pg_create_role() {
  local psql admin
  psql=$(psql_cmd) || return 1
  admin=$(build_url postgres postgres "" "$1" "$2" /postgres "")
  log "creating the PostgreSQL role $3 (superuser)"
  PGCONNECT_TIMEOUT=5 "$psql" -w "$admin" -qtAX -v ON_ERROR_STOP=1 -v role="$3" -v pass="$4" <<'SQL' >/dev/null
SELECT format('CREATE ROLE %I SUPERUSER LOGIN', :'role')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'role', :'pass') WHERE :'pass' <> '' \gexec
SQL
}

# pg_start_private HOST PORT: initialise (once) and start the private instance.
pg_start_private() {
  local host=$1 port=$2 bindir dir owner locale
  bindir=$(pg_bindir) || die "PostgreSQL's server binaries are not installed"
  dir=$(pg_private_dir)
  if is_root; then
    id postgres >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/postgresql postgres
    owner=postgres
  else
    owner=$(id -un)
  fi
  if [ -f "$dir/PG_VERSION" ]; then
    owner=$(stat -c %U "$dir")
    [ "$owner" != root ] || die "$dir belongs to root: PostgreSQL refuses to run as root (chown -R postgres $dir)"
    is_root || [ "$owner" = "$(id -un)" ] || die "$dir belongs to $owner: run this as $owner or root"
  else
    if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
      die "$dir exists but is not a PostgreSQL data directory: move it away"
    fi
    log "creating a private PostgreSQL in $dir (owner $owner)"
    mkdir -p "$dir"
    chmod 700 "$dir"
    is_root && chown "$owner:" "$dir"
    locale=C
    if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then locale=C.UTF-8; fi
    run_as "$owner" "$bindir/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 \
      --locale="$locale" >"$dir.initdb.log" 2>&1 \
      || { cat "$dir.initdb.log" >&2; die "initdb failed"; }
    rm -f "$dir.initdb.log"
    echo "include_if_exists = 'relayit.conf'" | run_as "$owner" tee -a "$dir/postgresql.conf" >/dev/null
  fi
  # Where it listens follows the URL on every start.
  printf "# written by scripts/lib.sh on every start\nlisten_addresses = '%s'\nport = %s\nunix_socket_directories = ''\n" \
    "$(listen_host "$host")" "$port" | run_as "$owner" tee "$dir/relayit.conf" >/dev/null
  if run_as "$owner" "$bindir/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    log "restarting the private PostgreSQL in $dir (it does not answer at $host:$port)"
    run_as "$owner" "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 restart >/dev/null \
      || { tail -n 20 "$dir/server.log" >&2; die "PostgreSQL did not restart (log: $dir/server.log)"; }
  else
    log "starting the private PostgreSQL in $dir on $host:$port"
    run_as "$owner" "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null \
      || { tail -n 20 "$dir/server.log" >&2; die "PostgreSQL did not start (log: $dir/server.log)"; }
  fi
}

# pg_start_system VERSION NAME: start a stopped Debian cluster.
pg_start_system() {
  is_root || die "the PostgreSQL cluster $1/$2 is stopped: start it with sudo pg_ctlcluster $1 $2 start"
  log "starting the PostgreSQL cluster $1/$2"
  pg_ctlcluster --skip-systemctl-redirect "$1" "$2" start
}

# pg_fix_login URL: the server answers at URL's address but refuses the URL; make it accept
# it when we can (see the top of this file). Sets PG_URL.
pg_fix_login() {
  local url=$1 host port user cluster
  parse_url "$url"
  host=$URL_HOST port=${URL_PORT:-5432} user=${URL_USER:-$(id -un)}
  if [ "$(pg_private_port 2>/dev/null)" = "$port" ] && is_local_host "$host"; then
    pg_create_role "$host" "$port" "$user" "$URL_PASS" || return 1
    PG_URL=$url
    wait_for "PostgreSQL login" 10 pg_answers "$(pg_admin_url "$url")"
    return
  fi
  case $PG_ERROR in
    *password*) ;;
    *) return 1 ;;
  esac
  if [ -z "$URL_HAS_PASS" ] && [ "$user" = postgres ] && is_root && is_local_host "$host" \
    && cluster=$(pg_system_cluster "$port"); then
    # A fresh Debian cluster asks for a password over TCP: give the postgres role one.
    log "setting the password 'postgres' for the postgres role of cluster $(printf '%s' "$cluster" | awk '{ print $1 "/" $2 }')"
    run_as postgres psql -p "$port" -qXc "ALTER ROLE postgres PASSWORD 'postgres'" >/dev/null || return 1
    PG_URL=$(build_url "$URL_SCHEME" postgres postgres "$URL_HOST" "$URL_PORT" "$URL_PATH" "$URL_QUERY")
    wait_for "PostgreSQL login" 30 pg_answers "$(pg_admin_url "$PG_URL")"
    return
  fi
  return 1
}

# postgres_packages URL: the apt packages ensure_postgres URL would need.
postgres_packages() {
  parse_url "$1" || return 0
  local host=$URL_HOST port=${URL_PORT:-5432}
  if ! port_open "$host" "$port" && is_local_host "$host" && ! pg_bindir >/dev/null; then
    echo postgresql postgresql-contrib
  elif ! psql_cmd >/dev/null && is_root; then
    echo postgresql-client
  fi
}

# ensure_postgres URL: make PostgreSQL answer at URL's server; sets PG_URL to the URL to use
# (URL itself, or with the password this gave the postgres role).
ensure_postgres() {
  local url=$1 host port cluster version name status
  parse_url "$url" || die "not a PostgreSQL URL: $(redact_url "$url")"
  case $URL_SCHEME in postgres | postgresql) ;; *) die "not a PostgreSQL URL: $(redact_url "$url")" ;; esac
  host=$URL_HOST port=${URL_PORT:-5432}
  [ -n "$host" ] || die "give the PostgreSQL URL a host: $(redact_url "$url")"
  PG_URL=$url
  # shellcheck disable=SC2046 # word splitting wanted
  install_packages $(postgres_packages "$url")

  if ! psql_cmd >/dev/null; then
    # Only without root, with a server answering: nothing to check with, relayit will tell.
    port_open "$host" "$port" || install_packages postgresql
    warn "psql is not installed: not checking the login at $(redact_url "$url")"
    return 0
  fi
  if pg_answers "$(pg_admin_url "$url")"; then
    log "PostgreSQL answers at $host:$port"
    return 0
  fi
  if ! port_open "$host" "$port"; then
    is_local_host "$host" \
      || die "PostgreSQL is not reachable at $host:$port, which is not this machine: start it there or fix the URL"
    if cluster=$(pg_system_cluster "$port"); then
      read -r version name status <<<"$cluster"
      case $status in online*) ;; *) pg_start_system "$version" "$name" ;; esac
      wait_for PostgreSQL 60 port_open "$host" "$port" \
        || die "the PostgreSQL cluster $version/$name does not listen on $host:$port"
    else
      pg_start_private "$host" "$port"
      # the instance's superuser is postgres: give the URL's user a role of its own
      if [ "${URL_USER:-$(id -un)}" != postgres ]; then
        pg_create_role "$host" "$port" "${URL_USER:-$(id -un)}" "$URL_PASS"
      fi
    fi
    wait_for PostgreSQL 30 pg_responds "$(pg_admin_url "$url")" \
      || die "PostgreSQL does not answer at $host:$port: $PG_ERROR"
    if pg_answers "$(pg_admin_url "$url")"; then
      log "PostgreSQL is ready at $host:$port"
      return 0
    fi
  fi
  if ! pg_fix_login "$url"; then
    case $PG_ERROR in
      *password*)
        [ -n "$URL_HAS_PASS" ] || PG_ERROR="$PG_ERROR
It asks for a password: give the role one (e.g. sudo -u postgres psql -p $port -c \"ALTER ROLE postgres PASSWORD 'postgres'\") and put it in the URL (postgres://postgres:postgres@$host:$port/...)" ;;
    esac
    die "PostgreSQL at $host:$port refuses $(redact_url "$url"): $PG_ERROR"
  fi
  log "PostgreSQL is ready at $host:$port"
}

# --- Redis ------------------------------------------------------------------------------
# redis_ping URL
redis_ping() {
  local url=$1
  if command -v redis-cli >/dev/null; then
    [ "$(timeout 5 redis-cli -u "$url" ping 2>/dev/null)" = PONG ]
  else
    parse_url "$url" || return 1
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"; printf "PING\r\n" >&3; IFS= read -r line <&3; [ "${line%$'"'"'\r'"'"'}" = +PONG ]' \
      "$(listen_host "$URL_HOST")" "${URL_PORT:-6379}" 2>/dev/null
  fi
}

# redis_packages URL [server]: the apt packages ensure_redis would need; with `server`, the
# redis-server binary is wanted anyway (the tests start their own).
redis_packages() {
  parse_url "$1" || return 0
  if [ "${2:-}" = server ] || { ! redis_ping "$1" && is_local_host "$URL_HOST"; }; then
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
      echo redis-server redis-tools
    fi
  fi
}

# ensure_redis URL: make Redis answer PONG at URL.
ensure_redis() {
  local url=$1 host port dir pid bind
  parse_url "$url" || die "not a Redis URL: $(redact_url "$url")"
  host=$URL_HOST port=${URL_PORT:-6379}
  # shellcheck disable=SC2046 # word splitting wanted
  install_packages $(redis_packages "$url")
  if redis_ping "$url"; then
    log "Redis answers at $host:$port"
    return 0
  fi
  [ "$URL_SCHEME" = redis ] || die "Redis does not answer at $(redact_url "$url")"
  if port_open "$host" "$port"; then
    die "something listens on $host:$port but does not answer PING as $(redact_url "$url") (a wrong password?)"
  fi
  is_local_host "$host" \
    || die "Redis is not reachable at $host:$port, which is not this machine: start it there or fix the URL"
  command -v redis-server >/dev/null || install_packages redis-server
  dir=$SERVICES_DIR/redis
  mkdir -p "$dir"
  # our own instance from an earlier run, listening elsewhere: stop it
  if [ -f "$dir/redis.pid" ]; then
    pid=$(cat "$dir/redis.pid")
    if [ -n "$pid" ] && grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null; then
      log "stopping the private Redis (pid $pid), which listens elsewhere"
      kill "$pid"
      wait_for "Redis to stop" 30 eval "! kill -0 $pid 2>/dev/null" || die "Redis (pid $pid) did not stop"
    fi
  fi
  bind=$(listen_host "$host")
  log "starting a private Redis in $dir on $bind:$port"
  local args=(--daemonize yes --bind "$bind" --port "$port" --dir "$dir" --save ""
    --appendonly yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log")
  if [ -n "$URL_PASS" ]; then args+=(--requirepass "$URL_PASS"); fi
  redis-server "${args[@]}" || die "redis-server did not start (log: $dir/redis.log)"
  wait_for Redis 30 redis_ping "$url" || {
    tail -n 20 "$dir/redis.log" >&2
    die "Redis does not answer at $host:$port (log: $dir/redis.log)"
  }
  log "Redis is ready at $host:$port"
}

# --- the tests' other tools ---------------------------------------------------------------
# moto_server (tests/aws.rs starts its own, as SES and SNS), the openssl CLI (certificates
# for signed SNS notifications), Debian's Chromium with its chromedriver (the dashboard's
# browser tests; nothing downloads a browser of its own), pgbouncer and PostgreSQL's server
# binaries with psql (tests/postgres_scaling.rs starts its own PgBouncer, and a primary with a
# streaming replica, whatever TEST_DATABASE_URL points at). Debian's pgbouncer package starts
# a service of its own on port 6432; the tests do not use it.
test_tool_packages() {
  command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || echo pgbouncer
  local bindir
  if ! bindir=$(pg_bindir) || [ ! -x "$bindir/pg_basebackup" ]; then echo postgresql; fi
  command -v psql >/dev/null || echo postgresql-client
  if ! command -v moto_server >/dev/null || ! python3 -c 'import moto' 2>/dev/null; then
    command -v python3 >/dev/null || echo python3
    python3 -m pip --version >/dev/null 2>&1 || echo python3-pip
  fi
  command -v openssl >/dev/null || echo openssl
  [ -x /usr/bin/chromium ] || echo chromium
  [ -x /usr/bin/chromedriver ] || echo chromium-driver
}

# pip_install SPEC: installs a Python package with pip, and makes its commands findable.
pip_install() {
  log "installing $1 with pip"
  # a Debian python refuses system-wide installs unless told (PEP 668)
  python3 -m pip install --quiet "$1" \
    || python3 -m pip install --quiet --break-system-packages "$1" \
    || die "could not install $1 with pip"
  if command -v pyenv >/dev/null; then pyenv rehash; fi
  hash -r
}

ensure_moto() {
  # pip --user puts it here
  case ":$PATH:" in *":$HOME/.local/bin:"*) ;; *) export PATH="$PATH:$HOME/.local/bin" ;; esac
  if ! command -v moto_server >/dev/null || ! python3 -c 'import moto' 2>/dev/null; then
    pip_install 'moto[server]'
  fi
  command -v moto_server >/dev/null || die "moto_server is not on PATH after installing moto"
}

# The pinned schemathesis (scripts/api-fuzz): a new release may add checks, which should come
# with a change of this line rather than break CI on its own.
SCHEMATHESIS_VERSION=4.32.5

ensure_schemathesis() {
  case ":$PATH:" in *":$HOME/.local/bin:"*) ;; *) export PATH="$PATH:$HOME/.local/bin" ;; esac
  if [ "$(schemathesis --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
    command -v python3 >/dev/null || install_packages python3
    python3 -m pip --version >/dev/null 2>&1 || install_packages python3-pip
    pip_install "schemathesis==$SCHEMATHESIS_VERSION"
  fi
  command -v schemathesis >/dev/null || die "schemathesis is not on PATH after installing it"
}

# --- a scratch server -------------------------------------------------------------------
# For the scripts that drive a real server from outside (scripts/walkthrough, scripts/api-fuzz):
# relayit started on a free port of this machine with a database and a Redis key prefix of its
# own, all of it undone afterwards.
#
# scratch_server_start BIN DIR [ROLES]: starts `BIN serve --role=ROLES` (default all) in DIR
# (its log: DIR/server.log, its data dir: DIR/data) with a scratch database, which the server
# creates, on the server of TEST_DATABASE_URL (an admin connection, default
# postgres://postgres@127.0.0.1:5432/postgres) and a fresh key prefix on TEST_REDIS_URL (default
# redis://127.0.0.1:6379). Its settings are exported as RELAYIT_* variables, so the caller's
# `relayit` commands reach the same database; other settings can be exported before the call.
# Waits until /readyz answers, then sets SCRATCH_URL (http://127.0.0.1:PORT).
# scratch_server_stop STATUS: stops the server (showing the end of its log when STATUS is not
# 0), drops the database and deletes the keys; safe to call when nothing was started, so it
# belongs in an EXIT trap.
SCRATCH_PID=""
SCRATCH_DB=""
SCRATCH_DIR=""

# A free TCP port on 127.0.0.1 below the kernel's ephemeral range (32768 and up by default),
# where the outgoing connections of whatever else runs here (the server's own, to PostgreSQL,
# among them) take their local ports: a port free of listeners there can still be taken by the
# time the server binds it.
free_port() {
  local low candidate
  low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  ((low > 21000)) || low=32768
  for _ in $(seq 1 50); do
    candidate=$((20000 + RANDOM % (low - 20000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

scratch_server_start() {
  local bin=$1 dir=$2 roles=${3:-all} port suffix admin_url
  admin_url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  SCRATCH_DIR=$dir
  port=$(free_port) || die "found no free port"
  suffix="$$_$RANDOM$RANDOM"
  unset RELAYIT_CONFIG DATABASE_URL REDIS_URL
  RELAYIT_DATABASE__URL=$(ADMIN="$admin_url" DB="relayit_scratch_$suffix" awk 'BEGIN {
    url = ENVIRON["ADMIN"]; q = ""
    if (match(url, /\?.*/)) { q = substr(url, RSTART); url = substr(url, 1, RSTART - 1) }
    # scheme://authority/path: replace the path (the database) with ours
    if (match(url, /^[a-z]+:\/\/[^\/]*/)) url = substr(url, 1, RLENGTH)
    print url "/" ENVIRON["DB"] q
  }')
  export RELAYIT_DATABASE__URL
  export RELAYIT_REDIS__URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379}
  export RELAYIT_REDIS__KEY_PREFIX="scratch-$suffix:"
  export RELAYIT_SERVER__BIND=127.0.0.1:$port
  export RELAYIT_SERVER__SHUTDOWN_GRACE=5s
  export RELAYIT_DATA_DIR=$dir/data
  RELAYIT_SECURITY__ENCRYPTION_KEY=$("$bin" generate-key) || die "$bin generate-key failed"
  export RELAYIT_SECURITY__ENCRYPTION_KEY

  log "starting relayit serve --role=$roles on 127.0.0.1:$port (database relayit_scratch_$suffix)"
  SCRATCH_DB=relayit_scratch_$suffix # the server creates it: dropped whatever happens from here on
  (cd "$dir" && NO_COLOR=1 exec "$bin" serve --role="$roles") >"$dir/server.log" 2>&1 &
  SCRATCH_PID=$!
  for _ in $(seq 1 240); do
    kill -0 "$SCRATCH_PID" 2>/dev/null || die "relayit exited before it was ready"
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then
      # shellcheck disable=SC2034 # for the scripts that source this file
      SCRATCH_URL=http://127.0.0.1:$port
      return 0
    fi
    sleep 0.5
  done
  die "relayit was not ready (GET /readyz) within 120 s"
}

scratch_server_stop() {
  local status=${1:-0} admin_url psql
  admin_url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  if [ -n "$SCRATCH_PID" ] && kill -0 "$SCRATCH_PID" 2>/dev/null; then
    kill -TERM "$SCRATCH_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$SCRATCH_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SCRATCH_PID" 2>/dev/null || true
    wait "$SCRATCH_PID" 2>/dev/null || true
  fi
  SCRATCH_PID=""
  if [ "$status" -ne 0 ] && [ -n "$SCRATCH_DIR" ] && [ -s "$SCRATCH_DIR/server.log" ]; then
    echo "----- server log (last 400 lines) -----" >&2
    tail -n 400 "$SCRATCH_DIR/server.log" >&2
    echo "----- end of server log -----" >&2
  fi
  if [ -n "$SCRATCH_DB" ]; then
    if psql=$(psql_cmd); then
      "$psql" "$admin_url" -qAtX -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS \"$SCRATCH_DB\" WITH (FORCE)" >/dev/null 2>&1 \
        || warn "could not drop the scratch database $SCRATCH_DB"
    else
      warn "psql not found: the scratch database $SCRATCH_DB was left behind"
    fi
    if command -v redis-cli >/dev/null; then
      redis-cli -u "$RELAYIT_REDIS__URL" --scan --pattern "${RELAYIT_REDIS__KEY_PREFIX}*" 2>/dev/null \
        | xargs -r redis-cli -u "$RELAYIT_REDIS__URL" del >/dev/null 2>&1 || true
    fi
  fi
  SCRATCH_DB=""
}

# --- everything the tests need ----------------------------------------------------------
# ensure_test_services: PostgreSQL at TEST_DATABASE_URL, Redis at TEST_REDIS_URL, the
# redis-server binary, moto_server and openssl; exports TEST_DATABASE_URL (with the password
# this may have given the postgres role) and TEST_REDIS_URL.
ensure_test_services() {
  local db=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  local redis=${TEST_REDIS_URL:-redis://127.0.0.1:6379}
  # shellcheck disable=SC2046 # word splitting wanted
  install_packages $(
    {
      postgres_packages "$db"
      redis_packages "$redis" server
      test_tool_packages
    } | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' '
  )
  ensure_postgres "$db"
  export TEST_DATABASE_URL=$PG_URL
  ensure_redis "$redis"
  export TEST_REDIS_URL=$redis
  ensure_moto
  log "moto_server, openssl, chromium, chromedriver, pgbouncer and PostgreSQL's server binaries are installed"
}
