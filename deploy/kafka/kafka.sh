#!/usr/bin/env bash
# A local, single-node Apache Kafka (KRaft: one combined broker + controller) on 127.0.0.1,
# built from the jars Maven resolves from deploy/kafka/pom.xml. For tests and `make run-kafka`.
#
#   kafka.sh fetch                   resolve the jars into deploy/kafka/libs (once; again when pom.xml changes)
#   kafka.sh start DATA_DIR PORT     format DATA_DIR (first time only) and start the broker; waits until it
#                                    accepts connections and answers a Metadata request; prints the bootstrap
#   kafka.sh stop DATA_DIR           SIGTERM (clean shutdown), SIGKILL after KAFKA_STOP_TIMEOUT seconds (30)
#   kafka.sh kill DATA_DIR           SIGKILL at once (fault tests); `start` again recovers the same data
#   kafka.sh status DATA_DIR         exit 0 when the broker process is alive
#
# DATA_DIR holds server.properties, log4j2.properties, kafka.pid, kafka.log (JVM output), controller.port
# and the log directory `data/`. Everything listens on 127.0.0.1 only.
# Environment: KAFKA_HEAP_OPTS (-Xms128m -Xmx512m), KAFKA_START_TIMEOUT (120), KAFKA_STOP_TIMEOUT (30), JAVA.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIBS="$HERE/libs"
POM="$HERE/pom.xml"
JAVA="${JAVA:-java}"
read -r -a HEAP_OPTS <<<"${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

log() { echo "kafka.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

pom_digest() { sha256sum "$POM" | cut -d' ' -f1; }

fetch() {
    local stamp="$LIBS/.pom.sha256"
    if compgen -G "$LIBS/kafka_2.13-*.jar" >/dev/null && [[ -f "$stamp" && "$(cat "$stamp")" == "$(pom_digest)" ]]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found: install Maven (Debian: apt-get install -y maven)"
    log "resolving Kafka jars from Maven Central into $LIBS"
    rm -rf "$LIBS"
    local mvnlog
    mvnlog="$(mktemp)"
    if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$LIBS" >"$mvnlog" 2>&1; then
        cat "$mvnlog" >&2
        rm -f "$mvnlog"
        die "mvn dependency:copy-dependencies failed"
    fi
    rm -f "$mvnlog"
    compgen -G "$LIBS/kafka_2.13-*.jar" >/dev/null || die "no kafka_2.13 jar in $LIBS after mvn"
    pom_digest >"$stamp"
}

# A free TCP port on 127.0.0.1 (the kernel picks it).
free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
        return
    fi
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        if ! port_open "$p"; then echo "$p"; return; fi
    done
    die "no free port found"
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
    local f="$1/kafka.pid"
    [[ -f "$f" ]] || return 1
    local pid
    pid="$(cat "$f")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    # guard against a stale pid file whose pid now belongs to something else
    if [[ -r "/proc/$pid/cmdline" ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka'; then
        return 1
    fi
    echo "$pid"
}

log_tail() {
    local f="$1/kafka.log"
    if [[ -f "$f" ]]; then
        echo "----- last 60 lines of $f -----" >&2
        tail -n 60 "$f" >&2
        echo "----- end of $f -----" >&2
    fi
}

# Sends a Metadata v4 request (all topics) and succeeds when the answer lists at least one broker.
metadata_ok() {
    local port="$1"
    if ! command -v python3 >/dev/null; then
        port_open "$port"
        return
    fi
    python3 - "$port" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])
client = b"kafka.sh"
# header v1: api_key=3 (Metadata), api_version=4, correlation_id, client_id; body: topics=null, allow_auto=false
body = struct.pack(">hhih", 3, 4, 42, len(client)) + client + struct.pack(">ib", -1, 0)
try:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        buf = b""
        while len(buf) < 4:
            chunk = s.recv(4 - len(buf))
            if not chunk:
                sys.exit(1)
            buf += chunk
        size = struct.unpack(">i", buf)[0]
        data = b""
        while len(data) < size:
            chunk = s.recv(size - len(data))
            if not chunk:
                sys.exit(1)
            data += chunk
    corr, _throttle, brokers = struct.unpack(">iii", data[:12])
    sys.exit(0 if corr == 42 and brokers >= 1 else 1)
except OSError:
    sys.exit(1)
PY
}

write_config() {
    local dir="$1" port="$2" cport="$3"
    cat >"$dir/server.properties" <<EOF
# Written by deploy/kafka/kafka.sh: single-node KRaft, loopback only, sized for tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data

auto.create.topics.enable=false
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a SIGKILL the old broker registration blocks the new one until its session expires (default 9s).
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000

num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
log.segment.bytes=8388608
log.index.size.max.bytes=1048576
log.retention.hours=168
log.retention.check.interval.ms=300000
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
EOF
    cat >"$dir/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
logger.controller.name = state.change.logger
logger.controller.level = WARN
EOF
}

cluster_id() {
    if command -v python3 >/dev/null; then
        python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))'
    else
        "$JAVA" -cp "$LIBS/*" kafka.tools.StorageTool random-uuid
    fi
}

start() {
    local dir="$1" port="$2"
    [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
    command -v "$JAVA" >/dev/null || die "java not found: install a JRE 17+ (Debian: apt-get install -y default-jre-headless)"
    fetch
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"

    local pid
    if pid="$(pid_of "$dir")"; then
        if metadata_ok "$port"; then
            log "already running (pid $pid) on 127.0.0.1:$port"
            echo "127.0.0.1:$port"
            return 0
        fi
        die "a broker (pid $pid) already runs from $dir but does not answer on port $port; stop it first"
    fi
    if port_open "$port"; then
        die "port 127.0.0.1:$port is already in use by another process"
    fi

    local cport
    if [[ -f "$dir/controller.port" ]]; then
        cport="$(cat "$dir/controller.port")"      # the quorum voter address must stay the same across restarts
        if port_open "$cport"; then die "controller port 127.0.0.1:$cport (from $dir/controller.port) is in use"; fi
    else
        cport="$(free_port)"
        [[ "$cport" != "$port" ]] || cport="$(free_port)"
        echo "$cport" >"$dir/controller.port"
    fi
    write_config "$dir" "$port" "$cport"

    if [[ ! -f "$dir/data/meta.properties" ]]; then
        local cid
        cid="$(cluster_id)"
        log "formatting $dir/data (cluster id $cid)"
        "$JAVA" "${HEAP_OPTS[@]}" -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$LIBS/*" \
            kafka.tools.StorageTool format --ignore-formatted -t "$cid" -c "$dir/server.properties" \
            >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "storage format failed"; }
    fi

    rm -f "$dir/kafka.pid"
    local t0=$SECONDS
    # setsid: the broker gets its own session, so a Ctrl-C in the terminal does not reach it; we stop it.
    # The inner shell records its own pid and then becomes the JVM (exec), so kafka.pid is the JVM's pid.
    {
        echo "===== $(date -u +%FT%TZ) kafka.sh start 127.0.0.1:$port (controller $cport) ====="
    } >>"$dir/kafka.log"
    # shellcheck disable=SC2016
    setsid bash -c 'echo $$ >"$1/kafka.pid"; shift; exec "$@"' _ "$dir" \
        "$JAVA" "${HEAP_OPTS[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir" \
        -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
        >>"$dir/kafka.log" 2>&1 </dev/null &
    local launcher=$! pid=""
    while (( SECONDS - t0 < START_TIMEOUT )); do
        if [[ -z "$pid" ]]; then
            pid="$(cat "$dir/kafka.pid" 2>/dev/null || true)"
            if [[ -z "$pid" ]] && ! kill -0 "$launcher" 2>/dev/null && (( SECONDS - t0 > 10 )); then
                log_tail "$dir"
                die "the broker launcher exited without starting the JVM (see $dir/kafka.log)"
            fi
        elif ! alive "$pid"; then
            log_tail "$dir"
            die "the broker exited during startup (see $dir/kafka.log)"
        elif port_open "$port" && metadata_ok "$port"; then
            log "started (pid $pid) on 127.0.0.1:$port in $((SECONDS - t0))s; log: $dir/kafka.log"
            echo "127.0.0.1:$port"
            return 0
        fi
        sleep 0.3
    done
    log_tail "$dir"
    [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
    die "the broker did not answer on 127.0.0.1:$port within ${START_TIMEOUT}s"
}

wait_gone() {
    local pid="$1" timeout="$2" t0=$SECONDS
    while alive "$pid"; do
        (( SECONDS - t0 < timeout )) || return 1
        sleep 0.2
    done
}

stop() {
    local dir="$1" pid
    if ! pid="$(pid_of "$dir")"; then
        log "not running ($dir)"
        rm -f "$dir/kafka.pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
        log "no clean shutdown within ${STOP_TIMEOUT}s; sending SIGKILL to $pid"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
    fi
    rm -f "$dir/kafka.pid"
    log "stopped (pid $pid)"
}

kill_now() {
    local dir="$1" pid
    if ! pid="$(pid_of "$dir")"; then
        log "not running ($dir)"
        rm -f "$dir/kafka.pid"
        return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "pid $pid survived SIGKILL"
    rm -f "$dir/kafka.pid"
    log "killed (pid $pid)"
}

cmd="${1:-}"
case "$cmd" in
    fetch) fetch ;;
    start) [[ $# -eq 3 ]] || usage; start "$2" "$3" ;;
    stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
    kill) [[ $# -eq 2 ]] || usage; kill_now "$2" ;;
    status) [[ $# -eq 2 ]] || usage; pid_of "$2" >/dev/null ;;
    *) usage ;;
esac
