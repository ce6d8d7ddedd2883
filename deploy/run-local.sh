#!/usr/bin/env bash
# Starts the three services on 127.0.0.1 and stops everything cleanly on Ctrl-C (INT) or TERM.
#
#   deploy/run-local.sh sql     embedded default: SQLite files under .run/, projections tail the SQL event log
#   deploy/run-local.sh kafka   a local Kafka broker (.run/kafka) and PostgreSQL (.run/postgres), both started
#                               here with deploy/kafka/kafka.sh and deploy/postgres/pg.sh, and stopped on exit
#
# For each service: `python -m services.<svc> migrate`, then `python -m services.<svc> serve` in the background
# (intake 8001, followup 8002, ledelsesinfo 8003). Settings are environment variables (shared/config.py);
# anything already exported (AUTH_JWT_SECRET, CPR_PSEUDONYM_KEY, LOG_LEVEL, ...) is passed through.
# Ports of the local servers in kafka mode: KAFKA_PORT (9092), PG_PORT (5432).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODE="${1:-sql}"
PY="${VENV_PYTHON:-$ROOT/.venv/bin/python}"
RUN="$ROOT/.run"
SERVICES=(intake followup ledelsesinfo)
declare -A PORTS=([intake]=8001 [followup]=8002 [ledelsesinfo]=8003)
KAFKA_PORT="${KAFKA_PORT:-9092}"
PG_PORT="${PG_PORT:-5432}"

say() { echo "run-local: $*" >&2; }

[[ -x "$PY" ]] || { say "no $PY; run 'make install' first"; exit 1; }
case "$MODE" in sql|kafka) ;; *) say "usage: $0 sql|kafka"; exit 2 ;; esac
mkdir -p "$RUN"

declare -a CHILDREN=()
STARTED_KAFKA=0
STARTED_PG=0
STOPPING=0

cleanup() {
    local rc=$?
    (( STOPPING )) && return
    STOPPING=1
    trap '' INT TERM
    if (( ${#CHILDREN[@]} )); then
        say "stopping the services"
        local pid
        for pid in "${CHILDREN[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
        local deadline=$((SECONDS + 20))
        for pid in "${CHILDREN[@]}"; do
            while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
            kill -KILL -- "-$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        done
    fi
    if (( STARTED_KAFKA )); then deploy/kafka/kafka.sh stop "$RUN/kafka" || true; fi
    if (( STARTED_PG )); then deploy/postgres/pg.sh stop "$RUN/postgres" || true; fi
    say "stopped"
    exit "$rc"
}
on_signal() { say "caught $1"; exit 0; }
trap cleanup EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for svc in "${SERVICES[@]}"; do
    if port_busy "${PORTS[$svc]}"; then say "port 127.0.0.1:${PORTS[$svc]} ($svc) is already in use"; exit 1; fi
done

export HOST=127.0.0.1
export TRANSPORT="$MODE"
declare -A DB_URL
if [[ "$MODE" == sql ]]; then
    export EVENT_STORE_URL="sqlite:///.run/intake.db"
    DB_URL=([intake]="" [followup]="sqlite:///.run/followup.db" [ledelsesinfo]="sqlite:///.run/ledelsesinfo.db")
else
    STARTED_KAFKA=1
    export KAFKA_BOOTSTRAP_SERVERS
    KAFKA_BOOTSTRAP_SERVERS="$(deploy/kafka/kafka.sh start "$RUN/kafka" "$KAFKA_PORT")"
    STARTED_PG=1
    deploy/postgres/pg.sh start "$RUN/postgres" "$PG_PORT" intake followup ledelsesinfo >/dev/null
    pg="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT"
    export EVENT_STORE_URL="$pg/intake"
    DB_URL=([intake]="" [followup]="$pg/followup" [ledelsesinfo]="$pg/ledelsesinfo")
    say "Kafka on $KAFKA_BOOTSTRAP_SERVERS, PostgreSQL on 127.0.0.1:$PG_PORT (databases intake, followup, ledelsesinfo)"
fi

for svc in "${SERVICES[@]}"; do
    say "migrate $svc"
    PORT="${PORTS[$svc]}" DATABASE_URL="${DB_URL[$svc]}" "$PY" -m "services.$svc" migrate
done

# job control: each service runs in its own process group, so a Ctrl-C reaches only this script,
# which then stops them once with TERM (a second signal would make uvicorn skip its graceful shutdown)
set -m
for svc in "${SERVICES[@]}"; do
    PORT="${PORTS[$svc]}" DATABASE_URL="${DB_URL[$svc]}" "$PY" -m "services.$svc" serve &
    CHILDREN+=($!)
    say "$svc: http://127.0.0.1:${PORTS[$svc]} (pid $!)"
done
set +m

# report readiness (informational)
for svc in "${SERVICES[@]}"; do
    url="http://127.0.0.1:${PORTS[$svc]}/health"
    if "$PY" - "$url" <<'PY'
import sys, time, urllib.request
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        time.sleep(0.3)
    except KeyboardInterrupt:
        sys.exit(130)
sys.exit(1)
PY
    then say "$svc is up ($url)"; else say "WARNING: $svc does not answer $url"; fi
done
say "all started (TRANSPORT=$MODE); Ctrl-C stops everything"

# any service exiting stops the whole set
wait -n "${CHILDREN[@]}" || true
say "a service exited; stopping the rest"
exit 1
