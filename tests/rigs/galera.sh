#!/usr/bin/env bash
# A 3-node MariaDB Galera cluster on 127.0.0.1, for the cluster tests (tests/rigs/README.md).
# Its own ports, data directories, sockets and pid files under $RIG_DIR/galera; it never
# touches the server on 3306 nor its files, and `stop` ends only the pids it recorded.
#
#   galera.sh start | stop | status | env
set -euo pipefail

RIG_DIR="${RIG_DIR:-/tmp/retention-rigs}"
BASE="$RIG_DIR/galera"
NODES=(1 2 3)
# RIG_PORT_OFFSET moves every port (and RIG_DIR the files), so two rigs can run side by side.
OFF="${RIG_PORT_OFFSET:-0}"
SQL_PORTS=(0 $((3311 + OFF)) $((3312 + OFF)) $((3313 + OFF)))
GCOMM_PORTS=(0 $((4571 + OFF)) $((4572 + OFF)) $((4573 + OFF)))
IST_PORTS=(0 $((4581 + OFF)) $((4582 + OFF)) $((4583 + OFF)))
SST_PORTS=(0 $((4591 + OFF)) $((4592 + OFF)) $((4593 + OFF)))
PROVIDER=/usr/lib/galera/libgalera_smm.so
MARIADBD=/usr/sbin/mariadbd
WAIT_SECONDS="${RIG_WAIT_SECONDS:-180}"

say() { echo "galera rig: $*"; }
die() { echo "galera rig: $*" >&2; exit 1; }

node_dir() { echo "$BASE/node$1"; }
sock() { echo "$BASE/node$1.sock"; }
pidfile() { echo "$BASE/node$1.pid"; }
errlog() { echo "$BASE/node$1.err"; }
cnf() { echo "$BASE/node$1.cnf"; }

# The pid in our pid file, only if that process is alive and is a mariadbd of this rig:
# a stale file whose pid was reused by something else must never be signalled.
node_pid() {
    local file pid
    file="$(pidfile "$1")"
    [[ -s "$file" ]] || return 1
    pid="$(tr -d '[:space:]' <"$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--defaults-file=$(cnf "$1")" || return 1
    echo "$pid"
}

running() { node_pid "$1" >/dev/null; }

sql() { # node, statement: over the node's own socket, no option files read
    mariadb --no-defaults -uroot -S "$(sock "$1")" -Nse "$2"
}

wsrep_status() { # node, variable
    sql "$1" "SHOW GLOBAL STATUS LIKE '$2'" 2>/dev/null | awk '{print $2}'
}

install_missing() {
    local missing=()
    [[ -x "$MARIADBD" ]] || die "$MARIADBD not found: install mariadb-server 10.11 first"
    command -v mariadb >/dev/null || missing+=(mariadb-client)
    [[ -f "$PROVIDER" ]] || missing+=(galera-4)
    command -v rsync >/dev/null || missing+=(rsync)
    # the rsync SST script checks its listener with ss (or lsof)
    command -v ss >/dev/null || command -v lsof >/dev/null || missing+=(iproute2)
    if ((${#missing[@]})); then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

# The nodes run as mysql, not root: the rsync SST daemon a joiner starts would otherwise
# switch to nobody and fail to write into the data directory.
prepare_base() {
    id mysql >/dev/null 2>&1 || die "no mysql OS user: install mariadb-server first"
    mkdir -p "$BASE"
    chown mysql:mysql "$BASE"
    runuser -u mysql -- test -w "$BASE" \
        || die "$BASE is not reachable by the mysql user: choose a RIG_DIR under /tmp"
}

port_busy() { ss -Htln "sport = :$1" | grep -q .; }

write_cnf() {
    local n="$1" peers
    peers="127.0.0.1:${GCOMM_PORTS[1]},127.0.0.1:${GCOMM_PORTS[2]},127.0.0.1:${GCOMM_PORTS[3]}"
    cat >"$(cnf "$n")" <<CNF
[mysqld]
user = mysql
datadir = $(node_dir "$n")
socket = $(sock "$n")
pid-file = $BASE/node$n.server.pid
log-error = $(errlog "$n")
bind-address = 127.0.0.1
port = ${SQL_PORTS[$n]}
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
innodb_buffer_pool_size = 32M
innodb_log_file_size = 16M
performance_schema = OFF
wsrep_on = ON
wsrep_provider = $PROVIDER
wsrep_cluster_name = retention_rig
wsrep_cluster_address = gcomm://$peers
wsrep_node_name = node$n
wsrep_node_address = 127.0.0.1:${GCOMM_PORTS[$n]}
wsrep_node_incoming_address = 127.0.0.1:${SQL_PORTS[$n]}
wsrep_sst_method = rsync
wsrep_sst_receive_address = 127.0.0.1:${SST_PORTS[$n]}
wsrep_provider_options = "gmcast.listen_addr=tcp://127.0.0.1:${GCOMM_PORTS[$n]};ist.recv_addr=127.0.0.1:${IST_PORTS[$n]};gcache.size=32M"

[sst]
sst-syslog = -1
CNF
}

wait_synced() { # node
    local n="$1" state=""
    for _ in $(seq 1 "$WAIT_SECONDS"); do
        if ! running "$n"; then
            tail -n 30 "$(errlog "$n")" >&2 || true
            die "node $n exited while starting (log: $(errlog "$n"))"
        fi
        state="$(wsrep_status "$n" wsrep_local_state_comment || true)"
        [[ "$state" == "Synced" ]] && return 0
        sleep 1
    done
    tail -n 30 "$(errlog "$n")" >&2 || true
    die "node $n not Synced after ${WAIT_SECONDS}s (state: ${state:-none}; log: $(errlog "$n"))"
}

start_node() { # node, extra mariadbd arguments...
    local n="$1"
    shift
    for port in "${SQL_PORTS[$n]}" "${GCOMM_PORTS[$n]}" "${IST_PORTS[$n]}" "${SST_PORTS[$n]}"; do
        port_busy "$port" && die "port $port is taken by another process; node $n not started"
    done
    rm -f "$(pidfile "$n")" "$(sock "$n")"
    say "starting node $n on 127.0.0.1:${SQL_PORTS[$n]} $*"
    # setsid: the node outlives this shell and gets no terminal signals meant for it
    setsid "$MARIADBD" --defaults-file="$(cnf "$n")" "$@" </dev/null >>"$(errlog "$n")" 2>&1 &
    # Our own record, written now: the server writes its pid file only after a joiner's
    # state transfer, and as mysql, so it cannot be the one `stop` relies on.
    echo "$!" >"$(pidfile "$n")"
    sleep 1
    running "$n" || { tail -n 30 "$(errlog "$n")" >&2; die "node $n did not start"; }
    wait_synced "$n"
}

initialise_first_node() {
    local dir
    dir="$(node_dir 1)"
    [[ -d "$dir/mysql" ]] && return 0
    say "initialising node 1's data directory"
    mkdir -p "$dir"
    chown mysql:mysql "$dir"
    mariadb-install-db --no-defaults --user=mysql --datadir="$dir" \
        --auth-root-authentication-method=normal --skip-test-db >"$BASE/install-db.log" 2>&1 \
        || { tail -n 30 "$BASE/install-db.log" >&2; die "mariadb-install-db failed"; }
}

grant_root_over_tcp() {
    # As on the main server: root over TCP from 127.0.0.1 with an empty password.
    # Run on node 1 and replicated (Galera replicates account DDL) to the joiners.
    sql 1 "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
           GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
           CREATE DATABASE IF NOT EXISTS test;"
}

any_running() {
    for n in "${NODES[@]}"; do running "$n" && return 0; done
    return 1
}

cmd_status() {
    local rc=0 size state
    for n in "${NODES[@]}"; do
        if pid="$(node_pid "$n")"; then
            size="$(wsrep_status "$n" wsrep_cluster_size || true)"
            state="$(wsrep_status "$n" wsrep_local_state_comment || true)"
            echo "node $n: running (pid $pid, port ${SQL_PORTS[$n]}, state ${state:-unknown}, cluster size ${size:-unknown})"
            [[ "$state" == "Synced" && "$size" == "3" ]] || rc=1
        else
            echo "node $n: stopped (port ${SQL_PORTS[$n]})"
            rc=3
        fi
    done
    return "$rc"
}

cmd_start() {
    install_missing
    prepare_base
    if cmd_status >/dev/null 2>&1; then
        say "already running"
        cmd_status
        return 0
    fi
    for n in "${NODES[@]}"; do write_cnf "$n"; done
    if ! any_running; then
        initialise_first_node
        # Bootstrapping is only safe because this rig's data is disposable: after an
        # unclean stop Galera marks the node unsafe to bootstrap, and we override that.
        [[ -f "$(node_dir 1)/grastate.dat" ]] \
            && sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "$(node_dir 1)/grastate.dat"
        # Node 1 is the source of truth; a joiner that had committed more before an
        # unclean stop would refuse to join ("states diverged"), so it takes a full copy.
        rm -f "$(node_dir 2)/grastate.dat" "$(node_dir 3)/grastate.dat"
        start_node 1 --wsrep-new-cluster
        grant_root_over_tcp
    fi
    for n in "${NODES[@]}"; do
        running "$n" && continue
        mkdir -p "$(node_dir "$n")"
        chown mysql:mysql "$(node_dir "$n")"
        start_node "$n"
    done
    for _ in $(seq 1 "$WAIT_SECONDS"); do
        cmd_status >/dev/null 2>&1 && break
        sleep 1
    done
    grant_root_over_tcp
    cmd_status || die "the cluster did not reach 3 Synced nodes"
}

cmd_stop() {
    local pid
    # Node 1 last, so it leaves safe_to_bootstrap set and the next start bootstraps cleanly.
    for n in 3 2 1; do
        pid="$(node_pid "$n")" || { rm -f "$(pidfile "$n")"; continue; }
        say "stopping node $n (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 1 60); do
            [[ -d "/proc/$pid" ]] || break
            sleep 1
        done
        if [[ -d "/proc/$pid" ]]; then
            say "node $n did not stop in 60s; killing pid $pid"
            kill -KILL "$pid" || true
        fi
        rm -f "$(pidfile "$n")"
    done
    say "stopped"
}

cmd_env() {
    local urls=()
    for n in "${NODES[@]}"; do urls+=("mysql+pymysql://root@127.0.0.1:${SQL_PORTS[$n]}/test"); done
    (IFS=,; echo "export RETENTION_TEST_GALERA_URLS=${urls[*]}")
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) echo "usage: $0 {start|stop|status|env}" >&2; exit 2 ;;
esac
