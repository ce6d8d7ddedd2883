#!/usr/bin/env bash
# A local PostgreSQL server on 127.0.0.1 for tests and `make run-kafka`.
#
#   pg.sh start DATA_DIR PORT [DB...]  initdb (first time only), start, create the database `underretning`
#                                      (and each further DB named); prints
#                                      postgresql://postgres@127.0.0.1:PORT/underretning on stdout
#   pg.sh stop DATA_DIR                fast shutdown (pg_ctl stop -m fast), SIGKILL after PG_STOP_TIMEOUT (30s)
#   pg.sh kill DATA_DIR                SIGKILL the postmaster and its backends (fault tests); `start` recovers
#   pg.sh status DATA_DIR              exit 0 when the postmaster is alive
#
# DATA_DIR holds the cluster `pgdata/`, the server log `postgres.log` and the unix socket dir `run/`.
# Authentication: trust, for the unix socket and 127.0.0.1 only (no other address is listened on).
# As root (initdb refuses root) the server runs as the unprivileged user PG_USER (default `pgtest`,
# created if missing) and DATA_DIR is chowned to it. Bin dir: $PG_BIN, `pg_config --bindir`, or the
# newest /usr/lib/postgresql/*/bin.
set -euo pipefail

START_TIMEOUT="${PG_START_TIMEOUT:-60}"
STOP_TIMEOUT="${PG_STOP_TIMEOUT:-30}"
RUN_USER="${PG_USER:-pgtest}"
DEFAULT_DB="underretning"

log() { echo "pg.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

find_bindir() {
    if [[ -n "${PG_BIN:-}" ]]; then
        [[ -x "$PG_BIN/initdb" ]] || die "PG_BIN=$PG_BIN has no initdb"
        echo "$PG_BIN"; return
    fi
    local d
    if command -v pg_config >/dev/null && d="$(pg_config --bindir 2>/dev/null)" && [[ -x "$d/initdb" ]]; then
        echo "$d"; return
    fi
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4 -V | tail -n 1 || true)"
    if [[ -n "$d" && -x "$d/initdb" ]]; then
        echo "$d"; return
    fi
    d="$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")"
    [[ -x "$d/initdb" ]] && { echo "$d"; return; }
    die "PostgreSQL server binaries not found (Debian: apt-get install -y postgresql); or set PG_BIN"
}

# Runs a command as the server's user: directly when not root, via runuser when root.
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u "$RUN_USER" -- "$@"
    else
        "$@"
    fi
}

ensure_user() {
    [[ $EUID -eq 0 ]] || return 0
    if ! id -u "$RUN_USER" >/dev/null 2>&1; then
        log "creating system user $RUN_USER"
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$RUN_USER" \
            || id -u "$RUN_USER" >/dev/null 2>&1 || die "could not create user $RUN_USER"
    fi
}

# alive PID: the process exists and is not a zombie (an unreaped zombie counts as gone)
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
    [[ "$state" != "Z" ]]
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_of() {
    local f="$1/pgdata/postmaster.pid" pid
    [[ -f "$f" ]] || return 1
    pid="$(head -n 1 "$f")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    if [[ -r "/proc/$pid/cmdline" ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'postgres'; then
        return 1
    fi
    echo "$pid"
}

log_tail() {
    local f="$1/postgres.log"
    if [[ -f "$f" ]]; then
        echo "----- last 40 lines of $f -----" >&2
        tail -n 40 "$f" >&2
        echo "----- end of $f -----" >&2
    fi
}

psql_() {
    local port="$1"; shift
    PGCONNECT_TIMEOUT=5 "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
}

ensure_db() {
    local port="$1" db="$2"
    [[ "$db" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "invalid database name '$db'"
    if [[ "$(psql_ "$port" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]]; then
        psql_ "$port" -c "CREATE DATABASE \"$db\"" >/dev/null
        log "created database $db"
    fi
}

start() {
    local dir="$1" port="$2"; shift 2
    [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
    BIN="$(find_bindir)"
    ensure_user
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    local pgdata="$dir/pgdata" sockdir="$dir/run"

    local pid
    if pid="$(pid_of "$dir")"; then
        if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; then
            log "already running (pid $pid) on 127.0.0.1:$port"
        else
            die "a postmaster (pid $pid) already runs from $dir but not on port $port; stop it first"
        fi
    else
        if port_open "$port"; then
            die "port 127.0.0.1:$port is already in use by another process"
        fi
        if [[ -f "$pgdata/postmaster.pid" ]]; then
            # left by a killed postmaster; its pid may still be an unreaped zombie, which postgres would
            # take for a live server
            log "removing stale $pgdata/postmaster.pid"
            rm -f "$pgdata/postmaster.pid"
        fi
        rm -f "$sockdir"/.s.PGSQL.*
        mkdir -p "$sockdir"
        if [[ $EUID -eq 0 ]]; then
            chown -R "$RUN_USER:" "$dir"
            as_pg test -x "$dir" || die "user $RUN_USER cannot reach $dir: a parent directory is not \
traversable (e.g. mode 0700); use a data dir under /tmp or a world-traversable path"
        fi
        if [[ ! -f "$pgdata/PG_VERSION" ]]; then
            log "initdb $pgdata"
            as_pg "$BIN/initdb" -D "$pgdata" -U postgres -A trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
                || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
            cat >"$pgdata/pg_hba.conf" <<'EOF'
# Written by deploy/postgres/pg.sh: trust, local socket and loopback only.
local   all   all                  trust
host    all   all   127.0.0.1/32   trust
EOF
        fi
        # unix socket paths are limited to ~107 bytes; fall back to TCP only for deep data dirs
        local sockconf="'$sockdir'"
        (( ${#sockdir} < 90 )) || sockconf="''"
        grep -q "^include_if_exists = 'pg_sh.conf'" "$pgdata/postgresql.conf" \
            || echo "include_if_exists = 'pg_sh.conf'" >>"$pgdata/postgresql.conf"
        cat >"$pgdata/pg_sh.conf" <<EOF
# Written by deploy/postgres/pg.sh at each start (included at the end of postgresql.conf).
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = $sockconf
max_connections = 300
shared_buffers = 64MB
fsync = on
synchronous_commit = on
log_min_messages = warning
log_line_prefix = '%m [%p] %d '
log_timezone = 'UTC'
timezone = 'UTC'
EOF
        [[ $EUID -ne 0 ]] || chown "$RUN_USER:" "$pgdata/pg_hba.conf" "$pgdata/pg_sh.conf" "$pgdata/postgresql.conf"
        local t0=$SECONDS
        echo "===== $(date -u +%FT%TZ) pg.sh start 127.0.0.1:$port =====" >>"$dir/postgres.log"
        [[ $EUID -ne 0 ]] || chown "$RUN_USER:" "$dir/postgres.log"
        if ! as_pg "$BIN/pg_ctl" -D "$pgdata" -l "$dir/postgres.log" -w -t "$START_TIMEOUT" start >"$dir/pg_ctl.log" 2>&1; then
            cat "$dir/pg_ctl.log" >&2
            log_tail "$dir"
            die "the server did not start on 127.0.0.1:$port"
        fi
        pid="$(pid_of "$dir" || echo '?')"
        log "started (pid $pid) on 127.0.0.1:$port in $((SECONDS - t0))s; log: $dir/postgres.log"
    fi

    local deadline=$((SECONDS + START_TIMEOUT))
    until "$BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; do
        (( SECONDS < deadline )) || { log_tail "$dir"; die "not accepting connections on 127.0.0.1:$port"; }
        sleep 0.2
    done
    local db
    for db in "$DEFAULT_DB" "$@"; do
        ensure_db "$port" "$db"
    done
    echo "postgresql://postgres@127.0.0.1:$port/$DEFAULT_DB"
}

wait_gone() {
    local pid="$1" timeout="$2" t0=$SECONDS
    while alive "$pid"; do
        (( SECONDS - t0 < timeout )) || return 1
        sleep 0.1
    done
}

# pids whose parent is $1 (from /proc, no procps needed)
children_of() {
    local d
    for d in /proc/[0-9]*; do
        [[ "$(awk '/^PPid:/ {print $2; exit}' "$d/status" 2>/dev/null)" == "$1" ]] && echo "${d#/proc/}"
    done
    return 0
}

kill_tree() {
    local pid="$1" kids k
    kids="$(children_of "$pid")"
    kill -KILL "$pid" 2>/dev/null || true
    for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
    wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
    for k in $kids; do wait_gone "$k" 10 || true; done
}

stop() {
    local dir="$1" pid
    if ! pid="$(pid_of "$dir")"; then
        log "not running ($dir)"
        return 0
    fi
    BIN="$(find_bindir)"
    if ! as_pg "$BIN/pg_ctl" -D "$dir/pgdata" -m fast -w -t "$STOP_TIMEOUT" stop >/dev/null 2>&1; then
        log "no clean shutdown within ${STOP_TIMEOUT}s; sending SIGKILL to $pid and its backends"
        kill_tree "$pid"
    fi
    wait_gone "$pid" 10 || die "postmaster $pid still alive"
    log "stopped (pid $pid)"
}

kill_now() {
    local dir="$1" pid
    if ! pid="$(pid_of "$dir")"; then
        log "not running ($dir)"
        return 0
    fi
    kill_tree "$pid"
    log "killed (pid $pid)"
}

cmd="${1:-}"
case "$cmd" in
    start) [[ $# -ge 3 ]] || usage; shift; start "$@" ;;
    stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
    kill) [[ $# -eq 2 ]] || usage; kill_now "$2" ;;
    status) [[ $# -eq 2 ]] || usage; pid_of "$2" >/dev/null ;;
    *) usage ;;
esac
