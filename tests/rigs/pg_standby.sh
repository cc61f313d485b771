#!/usr/bin/env bash
# A PostgreSQL 15 primary (127.0.0.1:5440) with a streaming hot standby (127.0.0.1:5441),
# for the cluster tests (tests/rigs/README.md). Own data directories and sockets under
# $RIG_DIR/pg, run as the postgres OS user; it never touches the server on 5432.
#
#   pg_standby.sh start | stop | status | env | pause-replay | resume-replay
set -euo pipefail

RIG_DIR="${RIG_DIR:-/tmp/retention-rigs}"
BASE="$RIG_DIR/pg"
BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PRIMARY="$BASE/primary"
STANDBY="$BASE/standby"
# RIG_PORT_OFFSET moves both ports (and RIG_DIR the files), so two rigs can run side by side.
PRIMARY_PORT=$((5440 + ${RIG_PORT_OFFSET:-0}))
STANDBY_PORT=$((5441 + ${RIG_PORT_OFFSET:-0}))
SLOT=rig_standby
WAIT_SECONDS="${RIG_WAIT_SECONDS:-120}"

say() { echo "pg rig: $*"; }
die() { echo "pg rig: $*" >&2; exit 1; }

as_pg() { runuser -u postgres -- "$@"; }

psql_at() { # port, statement: one value, unaligned
    as_pg "$BIN/psql" -X -q -h 127.0.0.1 -p "$1" -U postgres -d postgres -tAc "$2"
}

is_running() { # data directory
    [[ -f "$1/PG_VERSION" ]] && as_pg "$BIN/pg_ctl" -D "$1" status >/dev/null 2>&1
}

port_busy() { ss -Htln "sport = :$1" | grep -q .; }

check_tools() {
    for tool in initdb pg_ctl pg_basebackup psql; do
        [[ -x "$BIN/$tool" ]] || die "$BIN/$tool not found: install postgresql-15"
    done
    id postgres >/dev/null 2>&1 || die "no postgres OS user: install postgresql-15"
}

prepare_base() {
    mkdir -p "$BASE"
    chown postgres:postgres "$BASE"
    as_pg test -w "$BASE" || die "$BASE is not reachable by the postgres user: choose a RIG_DIR under /tmp"
}

start_server() { # data directory, port
    is_running "$1" && return 0
    port_busy "$2" && die "port $2 is taken by another process; $(basename "$1") not started"
    say "starting $(basename "$1") on 127.0.0.1:$2"
    as_pg "$BIN/pg_ctl" -D "$1" -l "$1.log" -w -t "$WAIT_SECONDS" start >/dev/null \
        || { tail -n 30 "$1.log" >&2; die "$(basename "$1") did not start (log: $1.log)"; }
}

# Settings shared by both servers; the standby inherits them through the base backup.
write_primary_conf() {
    cat >>"$PRIMARY/postgresql.conf" <<CONF

# retention test rig
listen_addresses = '127.0.0.1'
port = $PRIMARY_PORT
cluster_name = 'retention-rig-primary'
unix_socket_directories = '$BASE'
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
hot_standby = on
hot_standby_feedback = on
shared_buffers = 32MB
CONF
}

make_primary() {
    [[ -f "$PRIMARY/PG_VERSION" ]] && return 0
    say "initialising the primary"
    # a standby copied from an earlier primary could never follow this new one
    rm -rf "$PRIMARY" "$STANDBY"
    # trust on 127.0.0.1, replication included, as on the main server: a disposable rig
    as_pg "$BIN/initdb" -D "$PRIMARY" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 >"$BASE/initdb.log" 2>&1 \
        || { tail -n 30 "$BASE/initdb.log" >&2; die "initdb failed"; }
    write_primary_conf
}

prepare_primary() {
    psql_at "$PRIMARY_PORT" "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
        || psql_at "$PRIMARY_PORT" "CREATE DATABASE test" >/dev/null
    psql_at "$PRIMARY_PORT" "SELECT 1 FROM pg_replication_slots WHERE slot_name = '$SLOT'" | grep -q 1 \
        || psql_at "$PRIMARY_PORT" "SELECT pg_create_physical_replication_slot('$SLOT')" >/dev/null
}

make_standby() {
    [[ -f "$STANDBY/standby.signal" ]] && return 0
    say "making the standby with pg_basebackup -R"
    rm -rf "$STANDBY"
    as_pg "$BIN/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$STANDBY" \
        -R -X stream -S "$SLOT" --checkpoint=fast >"$BASE/basebackup.log" 2>&1 \
        || { tail -n 30 "$BASE/basebackup.log" >&2; die "pg_basebackup failed"; }
    # later lines win: only the port and the name differ from the primary's settings
    printf "\nport = %s\ncluster_name = 'retention-rig-standby'\n" "$STANDBY_PORT" \
        >>"$STANDBY/postgresql.conf"
}

streaming() {
    [[ "$(psql_at "$PRIMARY_PORT" "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null)" -ge 1 ]] \
        && [[ "$(psql_at "$STANDBY_PORT" "SELECT pg_is_in_recovery()" 2>/dev/null)" == "t" ]]
}

cmd_status() {
    local rc=0
    if is_running "$PRIMARY"; then
        echo "primary: running (port $PRIMARY_PORT)"
    else
        echo "primary: stopped (port $PRIMARY_PORT)"
        rc=3
    fi
    if is_running "$STANDBY"; then
        local replay
        replay="$(psql_at "$STANDBY_PORT" "SELECT pg_get_wal_replay_pause_state()" 2>/dev/null || true)"
        echo "standby: running (port $STANDBY_PORT, replay ${replay:-unknown})"
    else
        echo "standby: stopped (port $STANDBY_PORT)"
        rc=3
    fi
    if ((rc == 0)); then
        if streaming; then echo "replication: streaming"; else echo "replication: not streaming"; rc=1; fi
    fi
    return "$rc"
}

cmd_start() {
    check_tools
    if cmd_status >/dev/null 2>&1; then
        say "already running"
        cmd_status
        return 0
    fi
    prepare_base
    make_primary
    start_server "$PRIMARY" "$PRIMARY_PORT"
    prepare_primary
    make_standby
    start_server "$STANDBY" "$STANDBY_PORT"
    for _ in $(seq 1 "$WAIT_SECONDS"); do
        streaming && break
        sleep 1
    done
    cmd_status || die "the standby is not streaming (logs: $PRIMARY.log, $STANDBY.log)"
}

cmd_stop() {
    for dir in "$STANDBY" "$PRIMARY"; do
        if is_running "$dir"; then
            say "stopping $(basename "$dir")"
            as_pg "$BIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null
        fi
    done
    say "stopped"
}

cmd_replay() { # pause | resume
    is_running "$STANDBY" || die "the standby is not running"
    psql_at "$STANDBY_PORT" "SELECT pg_wal_replay_$1()" >/dev/null
    say "standby replay: $(psql_at "$STANDBY_PORT" "SELECT pg_get_wal_replay_pause_state()")"
}

cmd_env() {
    echo "export RETENTION_TEST_PG_PRIMARY_URL=postgresql+psycopg://postgres@127.0.0.1:$PRIMARY_PORT/test"
    echo "export RETENTION_TEST_PG_STANDBY_URL=postgresql+psycopg://postgres@127.0.0.1:$STANDBY_PORT/test"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    pause-replay) cmd_replay pause ;;
    resume-replay) cmd_replay resume ;;
    *) echo "usage: $0 {start|stop|status|env|pause-replay|resume-replay}" >&2; exit 2 ;;
esac
