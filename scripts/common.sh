# shellcheck shell=bash
# Set-up steps shared by bin/test and bin/demo. Source this file from the repository root:
#
#     cd "$(dirname "${BASH_SOURCE[0]}")/.." && source scripts/common.sh
#
# Every step is safe to repeat: what is already in place is left alone, so a second run only
# checks. Paths are relative to the repository root, which is the current directory.

VENV=.venv
VENV_PY=$VENV/bin/python

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf '==> warning: %s\n' "$*" >&2; }
die() {
    printf '==> error: %s\n' "$1" >&2
    shift
    local line
    for line in "$@"; do printf '    %s\n' "$line" >&2; done
    exit 1
}

# --- Python ----------------------------------------------------------------------------------

# Django 6 needs Python 3.12 or later.
python_is_recent() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

# Sets PYTHON_BIN to a Python 3.12+ interpreter: $PYTHON if set, else the first of python3.13,
# python3.12, python3 on PATH that is recent enough, else the newest pyenv 3.13 or 3.12.
find_python() {
    if [[ -n ${PYTHON:-} ]]; then
        python_is_recent "$PYTHON" || die "PYTHON=$PYTHON is not a working Python 3.12 or later"
        PYTHON_BIN=$PYTHON
        return
    fi
    local candidate pyenv_root
    for candidate in python3.13 python3.12 python3; do
        # pyenv shims exist for versions that are not selected and then fail: run each one.
        if command -v "$candidate" >/dev/null 2>&1 && python_is_recent "$candidate"; then
            PYTHON_BIN=$(command -v "$candidate")
            return
        fi
    done
    pyenv_root=$(pyenv root 2>/dev/null || printf '%s' "$HOME/.pyenv")
    for candidate in $(
        printf '%s\n' "$pyenv_root"/versions/3.13*/bin/python | sort -rV
        printf '%s\n' "$pyenv_root"/versions/3.12*/bin/python | sort -rV
    ); do
        if [[ -x $candidate ]] && python_is_recent "$candidate"; then
            PYTHON_BIN=$candidate
            return
        fi
    done
    die "Python 3.12 or later is needed (Django 6) and none was found." \
        "Install one, for example:" \
        "  Debian 13+, Ubuntu 24.04+: sudo apt-get install python3 python3-venv" \
        "  pyenv:         pyenv install 3.12" \
        "  uv:            uv python install 3.12" \
        "  macOS:         brew install python@3.12" \
        "or point PYTHON at one: PYTHON=/path/to/python3.12 $0"
}

# A fingerprint of what the virtualenv was installed from; a change means pip must run again.
project_fingerprint() {
    "$VENV_PY" -c 'import hashlib, sys
print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest(), sys.version.split()[0])'
}

# Creates .venv (or recreates it when its Python is broken or too old) and installs the
# project with the given extra, skipping pip when pyproject.toml is unchanged since the last
# successful install.
ensure_venv() {
    local extra=$1 fingerprint stamp
    if [[ -e $VENV ]] && ! python_is_recent "$VENV_PY"; then
        say "recreating $VENV: its Python is missing, broken or older than 3.12"
        rm -rf "$VENV"
    fi
    if [[ ! -x $VENV_PY ]]; then
        find_python
        say "creating $VENV with $PYTHON_BIN ($("$PYTHON_BIN" -V 2>&1))"
        "$PYTHON_BIN" -m venv "$VENV" ||
            die "could not create $VENV with $PYTHON_BIN" \
                "On Debian/Ubuntu the venv module is a separate package: apt-get install python3-venv"
    fi
    fingerprint=$(project_fingerprint)
    stamp=$VENV/.installed-$extra
    if [[ -f $stamp && $(<"$stamp") == "$fingerprint" ]] ||
        # The dev extra includes the demo extra.
        [[ $extra == demo && -f $VENV/.installed-dev && $(<"$VENV/.installed-dev") == "$fingerprint" ]]; then
        say "Python packages up to date ($VENV, .[$extra])"
        return
    fi
    say "installing Python packages into $VENV: pip install -e '.[$extra]' (first run: a few minutes)"
    # Some machines' pip configuration names extra index folders that do not exist; pip warns
    # once per package about them, which buries the lines that matter.
    "$VENV_PY" -m pip install --quiet --disable-pip-version-check -e ".[$extra]" 2>&1 |
        { grep -v "^WARNING: Location '.*' is ignored: it is neither a file nor a directory" || true; } ||
        die "pip install -e '.[$extra]' failed (see the output above)"
    printf '%s\n' "$fingerprint" >"$stamp"
}

# --- configuration -------------------------------------------------------------------------

# Creates .env from .env.example with a fresh SECRET_KEY. An existing .env is never touched.
ensure_dotenv() {
    if [[ -f .env ]]; then
        say ".env present (left as it is)"
        return
    fi
    [[ -f .env.example ]] || die ".env.example is missing; is this a complete checkout?"
    say "creating .env from .env.example with a new random SECRET_KEY"
    "$VENV_PY" - <<'PY'
import os
import secrets

lines = open(".env.example").read().splitlines()
lines = [
    f"SECRET_KEY={secrets.token_urlsafe(50)}" if line.strip() == "SECRET_KEY=" else line
    for line in lines
]
# O_EXCL: never overwrite a .env that appeared meanwhile; 0600: it holds a secret.
fd = os.open(".env", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
with os.fdopen(fd, "w") as dotenv:
    dotenv.write("\n".join(lines) + "\n")
PY
}

# Prints a setting the way console/settings.py reads it: the environment wins, then the first
# NAME=value line of .env, then the default.
config_value() {
    local name=$1 default=${2:-}
    if [[ -n ${!name+set} ]]; then
        printf '%s\n' "${!name}"
        return
    fi
    "$VENV_PY" - "$name" "$default" <<'PY'
import os
import sys

name, value = sys.argv[1], sys.argv[2]
if os.path.isfile(".env"):
    for raw in open(".env").read().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, found = line.partition("=")
            if key.strip() == name:
                value = found.strip().strip("'\"")
                break
print(value)
PY
}

config_flag() {
    case "$(config_value "$1" "${2:-}" | tr '[:upper:]' '[:lower:]')" in
    1 | true | yes | on) return 0 ;;
    *) return 1 ;;
    esac
}

# Prints "host|port" of a URL; host is empty for a PostgreSQL Unix socket given as ?host=/dir.
url_host_port() {
    "$VENV_PY" - "$1" "$2" <<'PY'
import sys
from urllib.parse import parse_qs, unquote, urlsplit

url, default_port = urlsplit(sys.argv[1]), int(sys.argv[2])
query = parse_qs(url.query)
host = unquote(url.hostname or "") or query.get("host", [""])[0]
port = url.port or int(query.get("port", [default_port])[0])
print(f"{host}|{port}")
PY
}

is_local_host() {
    case "$1" in
    "" | /* | localhost | 127.* | ::1 | 0.0.0.0) return 0 ;;
    *) return 1 ;;
    esac
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        return 1
    fi
}

# Runs the command every half second until it succeeds or the seconds run out.
wait_until() {
    local seconds=$1 tries
    shift
    for ((tries = seconds * 2; tries > 0; tries--)); do
        "$@" && return 0
        sleep 0.5
    done
    return 1
}

tcp_answers() {
    "$VENV_PY" -c 'import socket, sys
socket.create_connection((sys.argv[1] or "127.0.0.1", int(sys.argv[2])), timeout=2).close()' \
        "$1" "$2" >/dev/null 2>&1
}

# --- PostgreSQL ------------------------------------------------------------------------------

DEFAULT_DATABASE_URL=postgres://postgres@127.0.0.1:5432/backout

postgres_answers() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q ${PG_HOST:+-h "$PG_HOST"} -p "$PG_PORT" -t 3
    else
        tcp_answers "$PG_HOST" "$PG_PORT"
    fi
}

start_local_postgres() {
    local conf dir status=0
    if command -v pg_ctlcluster >/dev/null 2>&1 && compgen -G '/etc/postgresql/*/*/postgresql.conf' >/dev/null; then
        # Debian: every cluster, /etc/postgresql/<version>/<name>; one already running says so.
        for conf in /etc/postgresql/*/*/postgresql.conf; do
            dir=${conf%/postgresql.conf}
            note "pg_ctlcluster ${dir#/etc/postgresql/} start"
            as_root pg_ctlcluster --skip-systemctl-redirect "$(basename "$(dirname "$dir")")" \
                "$(basename "$dir")" start || status=1
        done
        return "$status"
    fi
    if command -v service >/dev/null 2>&1 && [[ -e /etc/init.d/postgresql ]]; then
        note "service postgresql start"
        as_root service postgresql start
        return
    fi
    return 1
}

postgres_installed() {
    command -v pg_ctlcluster >/dev/null 2>&1 || [[ -e /etc/init.d/postgresql ]] ||
        command -v postgres >/dev/null 2>&1
}

ensure_postgres() {
    local host_port
    DATABASE_URL=$(config_value DATABASE_URL "$DEFAULT_DATABASE_URL")
    host_port=$(url_host_port "$DATABASE_URL" 5432)
    PG_HOST=${host_port%|*}
    PG_PORT=${host_port##*|}
    local where="${PG_HOST:-local socket}:$PG_PORT"
    if postgres_answers; then
        say "PostgreSQL answers on $where"
        return
    fi
    if ! is_local_host "$PG_HOST"; then
        die "PostgreSQL does not answer on $where (DATABASE_URL); start it or fix DATABASE_URL in .env"
    fi
    if ! postgres_installed; then
        die "PostgreSQL does not answer on $where and is not installed here." \
            "Install it:  sudo apt-get install postgresql   (macOS: brew install postgresql@16 && brew services start postgresql@16)" \
            "or point DATABASE_URL (environment or .env) at a PostgreSQL you have, e.g." \
            "  DATABASE_URL=postgres://user:password@db.example:5432/backout"
    fi
    say "starting PostgreSQL (it does not answer on $where)"
    start_local_postgres || warn "could not start PostgreSQL (see above); waiting anyway"
    wait_until 20 postgres_answers ||
        die "PostgreSQL still does not answer on $where after 20 s." \
            "Check its log under /var/log/postgresql/ and that DATABASE_URL names the right port."
    say "PostgreSQL answers on $where"
}

# Creates the database named in DATABASE_URL when it does not exist yet. (pytest-django makes
# the test database itself.)
ensure_database() {
    "$VENV_PY" - "$DATABASE_URL" <<'PY' || die "could not create the database of DATABASE_URL (see above)"
import sys

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict

url = sys.argv[1]
name = conninfo_to_dict(url).get("dbname")
if not name:
    sys.exit(f"DATABASE_URL names no database: {url}")
try:
    conn = psycopg.connect(url, dbname="postgres", autocommit=True, connect_timeout=10)
except psycopg.OperationalError:
    conn = psycopg.connect(url, dbname="template1", autocommit=True, connect_timeout=10)
with conn:
    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        print(f"==> database {name} exists")
    else:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"==> created database {name}")
        except errors.DuplicateDatabase:
            print(f"==> database {name} exists")
PY
}

# --- Redis -----------------------------------------------------------------------------------

DEFAULT_REDIS_URL=redis://127.0.0.1:6379/0

redis_answers() {
    if command -v redis-cli >/dev/null 2>&1; then
        [[ $(redis-cli -u "$REDIS_URL" ping 2>/dev/null) == PONG ]]
    else
        "$VENV_PY" -c 'import sys, redis
redis.Redis.from_url(sys.argv[1], socket_timeout=2).ping()' "$REDIS_URL" >/dev/null 2>&1
    fi
}

start_local_redis() {
    local dir=/var/lib/redis logfile=/var/log/redis/ci.log
    if ! mkdir -p "$dir" "${logfile%/*}" 2>/dev/null || [[ ! -w $dir || ! -w ${logfile%/*} ]]; then
        # Not root: keep Redis's working directory and log inside the checkout.
        dir=$PWD/var/redis
        logfile=$PWD/var/log/redis.log
        mkdir -p "$dir" "${logfile%/*}"
    fi
    note "redis-server --port $REDIS_PORT (log: $logfile)"
    # The same flags the machines start Redis with: nothing is kept on disk.
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir "$dir" --logfile "$logfile"
}

ensure_redis() {
    local host_port redis_host
    REDIS_URL=$(config_value REDIS_URL "$DEFAULT_REDIS_URL")
    host_port=$(url_host_port "$REDIS_URL" 6379)
    redis_host=${host_port%|*}
    REDIS_PORT=${host_port##*|}
    local where="$redis_host:$REDIS_PORT"
    if redis_answers; then
        say "Redis answers on $where"
        return
    fi
    if ! is_local_host "$redis_host"; then
        die "Redis does not answer on $where (REDIS_URL); start it or fix REDIS_URL in .env"
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        die "Redis does not answer on $where and is not installed here." \
            "Install it:  sudo apt-get install redis-server   (macOS: brew install redis && brew services start redis)" \
            "or point REDIS_URL (environment or .env) at a Redis you have, e.g." \
            "  REDIS_URL=redis://cache.example:6379/0"
    fi
    say "starting Redis (it does not answer on $where)"
    start_local_redis || warn "redis-server did not start (see above); waiting anyway"
    wait_until 20 redis_answers || die "Redis still does not answer on $where after 20 s."
    say "Redis answers on $where"
}

ensure_services() {
    ensure_postgres
    ensure_redis
}
