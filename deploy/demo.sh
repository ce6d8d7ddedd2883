#!/usr/bin/env bash
# `make demo`: the three services with the embedded default (SQLite under .run/, no Kafka, no
# PostgreSQL) filled with one year of synthetic data for a few municipalities; prints tokens and the
# URLs of the weekly report, the monthly report and a caseworker's worklist; keeps running until
# Ctrl-C, which stops everything.
#
# Steps: generate the data (python -m synth, one NDJSON file per municipality, the year up to today),
# start deploy/run-local.sh sql in the background (logs in .run/demo/services.log), wait for /health
# on 8001-8003, import each file with `python -m services.intake import` (progress bar), wait until
# the followup and ledelsesinfo projections have every event, print what to look at.
#
# The demo needs an empty event store: data a previous demo left in .run/ is replaced; other data
# there (from `make run`) is moved aside to .run/before-demo-<time>/ first.
#
# Settings (environment): DEMO_MUNICIPALITIES (657,167,510: Herning, Hvidovre and Haderslev, the
# partnership of seed 000), DEMO_SCALE (0.3: volume relative to the national intensity), DEMO_SEED (1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${VENV_PYTHON:-$ROOT/.venv/bin/python}"
RUN="$ROOT/.run"
DEMO="$RUN/demo"
MUNICIPALITIES="${DEMO_MUNICIPALITIES:-657,167,510}"
SCALE="${DEMO_SCALE:-0.3}"
SEED="${DEMO_SEED:-1}"
PORTS=(8001 8002 8003)

say() { echo "demo: $*" >&2; }

[[ -x "$PY" ]] || { say "no $PY; run 'make install' first"; exit 1; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "${PORTS[@]}"; do
    if port_busy "$port"; then say "port 127.0.0.1:$port is already in use (is 'make run' running?)"; exit 1; fi
done

# --- an empty event store ---------------------------------------------------------------------
mkdir -p "$RUN"
shopt -s nullglob
existing=("$RUN"/intake.db* "$RUN"/followup.db* "$RUN"/ledelsesinfo.db*)
shopt -u nullglob
if (( ${#existing[@]} )); then
    if [[ -f "$DEMO/marker" ]]; then
        say "replacing the data of the previous demo"
        rm -f "${existing[@]}"
    else
        aside="$RUN/before-demo-$(date +%Y%m%d-%H%M%S)"
        mkdir -p "$aside"
        mv "${existing[@]}" "$aside/"
        say "moved the existing data in .run/ aside to $aside"
    fi
fi
rm -rf "$DEMO"
mkdir -p "$DEMO"
touch "$DEMO/marker"  # the databases in .run/ are the demo's from here on

# --- the data -------------------------------------------------------------------------------------
START="$("$PY" -m synth.demo start)"   # one year ago; the year runs up to this minute (an export taken now)
UNTIL="$(date +%Y-%m-%dT%H:%M:00%:z)"
say "generating a year of synthetic records ($START to now) for $MUNICIPALITIES (scale $SCALE, seed $SEED)"
"$PY" -m synth --seed "$SEED" --start "$START" --until "$UNTIL" --municipalities "$MUNICIPALITIES" \
    --scale "$SCALE" --out "$DEMO/records-{municipality}.ndjson" --manifest "$DEMO/manifest.json"

# --- the services ---------------------------------------------------------------------------------
RUN_PID=""
STOPPING=0
cleanup() {
    local rc=$?
    (( STOPPING )) && return
    STOPPING=1
    trap '' INT TERM
    if [[ -n "$RUN_PID" ]] && kill -0 "$RUN_PID" 2>/dev/null; then
        say "stopping the services"
        kill -TERM "$RUN_PID" 2>/dev/null || true
        wait "$RUN_PID" 2>/dev/null || true
    fi
    say "stopped (the demo data stays in .run/; 'make clean-run' removes it)"
    exit "$rc"
}
trap cleanup EXIT
trap 'say "caught INT"; exit 0' INT
trap 'say "caught TERM"; exit 0' TERM

say "starting the services (deploy/run-local.sh sql; logs in .run/demo/services.log)"
VENV_PYTHON="$PY" deploy/run-local.sh sql >"$DEMO/services.log" 2>&1 &
RUN_PID=$!

deadline=$((SECONDS + 180))
for port in "${PORTS[@]}"; do
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null; do
        if ! kill -0 "$RUN_PID" 2>/dev/null; then
            say "the services did not start; the end of .run/demo/services.log:"
            tail -n 30 "$DEMO/services.log" >&2
            exit 1
        fi
        if (( SECONDS > deadline )); then say "no answer on 127.0.0.1:$port/health after 180 s"; exit 1; fi
        sleep 0.5
    done
done
say "services up: intake :8001, followup :8002, ledelsesinfo :8003"

# --- the import -----------------------------------------------------------------------------------
export EVENT_STORE_URL="sqlite:///.run/intake.db" TRANSPORT=sql
IFS=',' read -r -a codes <<<"$MUNICIPALITIES"
for m in "${codes[@]}"; do
    say "importing $DEMO/records-$m.ndjson"
    if ! "$PY" -m services.intake import "$DEMO/records-$m.ndjson" --municipality "$m" >/dev/null; then
        say "WARNING: intake rejected some records of $m (see above)"
    fi
done
unset EVENT_STORE_URL TRANSPORT

"$PY" -m synth.demo wait --timeout 1200 || say "WARNING: the figures may still be incomplete"
"$PY" -m synth.demo info --manifest "$DEMO/manifest.json"

# --- until Ctrl-C -----------------------------------------------------------------------------------
wait "$RUN_PID" || true
say "the services stopped"
exit 1
