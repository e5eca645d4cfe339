#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for testing the workflow through Snakemake's SLURM executor.
#
#   tests/slurm/cluster.sh install   apt-get the Debian packages (Slurm, munge, MariaDB) that are missing
#   tests/slurm/cluster.sh start     start munged, mariadbd, slurmdbd, slurmctld, slurmd (those not running)
#   tests/slurm/cluster.sh status    what runs, the node's state; exit 0 only when every daemon runs
#   tests/slurm/cluster.sh stop      cancel this cluster's jobs, stop its daemons (those that run)
#   tests/slurm/cluster.sh clean     stop, then delete the state folder (database, logs, keys)
#   tests/slurm/cluster.sh env       print SLURM_CONF=... (clients also find the running cluster without it)
#
# Everything lives in $TRAJBENCH_SLURM_DIR (default /tmp/trajbench-slurm): configs, munge key and socket, MariaDB
# data, Slurm state, pid files and logs (log/). One link lies outside it while the cluster runs:
# /etc/slurm/slurm.conf -> $TRAJBENCH_SLURM_DIR/etc/slurm.conf, for srun inside jobs (see SYSTEM_CONF below);
# start refuses to replace a machine's own slurm.conf. Its own munged (own key and socket) and mariadbd: a
# machine's munge or MariaDB is left alone. The daemons listen on 127.0.0.1 only, on ports $TRAJBENCH_SLURM_PORT
# (default 6817: slurmctld) to +3 (slurmd, slurmdbd, mariadbd). Cluster $TRAJBENCH_SLURM_CLUSTER (trajbench),
# partition $TRAJBENCH_SLURM_PARTITION (debug, no time limit). The node has the machine's CPUs and memory
# (slurmd -C) and $TRAJBENCH_SLURM_GPUS (4) GPUs with no device behind them, so that jobs asking for --gpus
# schedule; they run on the CPU. Root only: the daemons run as root, like the test that uses them.
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin # the daemons live there, which a non-login shell may not have on its PATH

DIR=${TRAJBENCH_SLURM_DIR:-/tmp/trajbench-slurm}
PARTITION=${TRAJBENCH_SLURM_PARTITION:-debug}
CLUSTER=${TRAJBENCH_SLURM_CLUSTER:-trajbench}
PORT=${TRAJBENCH_SLURM_PORT:-6817}
GPUS=${TRAJBENCH_SLURM_GPUS:-4}
PACKAGES=(slurmctld slurmd slurmdbd slurm-client munge mariadb-server)
COMMANDS=(slurmctld slurmd slurmdbd sbatch sacct sacctmgr sinfo munged mungekey mariadbd mariadb-install-db mariadb)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd) # start order; stop goes in reverse

ETC=$DIR/etc
LOG=$DIR/log
RUN=$DIR/run
export SLURM_CONF=$ETC/slurm.conf
MYSQL_SOCKET=$RUN/mysqld.sock
DB_PASS=trajbench-local-only # the database listens on 127.0.0.1 only, for this throwaway cluster

# srun inside a job finds the cluster only at Slurm's default path: Snakemake's job step
# (snakemake-executor-plugin-slurm-jobstep) drops every SLURM_* variable but the job's identity, SLURM_CONF too,
# before it calls srun.
SYSTEM_CONF=/etc/slurm/slurm.conf

say() { echo "cluster.sh: $*"; }
die() {
    echo "cluster.sh: error: $*" >&2
    exit 1
}

need_root() {
    [[ $(id -u) == 0 ]] || die "must run as root (the daemons run as root); use sudo, or run the test as root"
}

missing_commands() {
    local cmd
    for cmd in "${COMMANDS[@]}"; do
        command -v "$cmd" >/dev/null || echo "$cmd"
    done
}

cmd_install() {
    need_root
    if [[ -z $(missing_commands) ]]; then
        say "packages already installed: ${PACKAGES[*]}"
        return
    fi
    command -v apt-get >/dev/null || die "apt-get not found; install ${PACKAGES[*]} with this system's package manager"
    say "installing ${PACKAGES[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    # Quiet unless it fails. Where apt starts the packages' own services, they do not clash with this cluster's
    # daemons (own sockets and ports).
    local out
    if ! out=$(apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" 2>&1); then
        echo "$out" | tail -20 >&2
        die "apt-get install ${PACKAGES[*]} failed"
    fi
    local missing
    missing=$(missing_commands | tr '\n' ' ')
    [[ -z $missing ]] || die "installed ${PACKAGES[*]}, but still missing: $missing"
}

need_packages() {
    local missing
    missing=$(missing_commands | tr '\n' ' ')
    [[ -z $missing ]] || die "missing commands: $missing; run: $0 install"
}

pidfile() { echo "$RUN/$1.pid"; }

# The pid of a daemon this script started, if it still runs.
running_pid() {
    local file pid
    file=$(pidfile "$1")
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

# wait_for SECONDS DAEMON COMMAND...: retry COMMAND every 0.2 s; on time-out show DAEMON's log and fail.
wait_for() {
    local seconds=$1 daemon=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            tail -15 "$LOG/$daemon.log" >&2 2>/dev/null || true
            die "$daemon not ready after ${seconds}s: '$*' kept failing (log: $LOG/$daemon.log)"
        fi
        sleep 0.2
    done
}

write_configs() {
    mkdir -p "$ETC" "$LOG" "$RUN" "$DIR/munge" "$DIR/state/ctld" "$DIR/state/slurmd"
    chmod 755 "$DIR/munge" # clients need to reach the socket; the key itself is 0600
    local node hardware
    node=$(hostname -s)
    # The node as slurmd sees it (CPUs, sockets, cores, threads, RealMemory), so that no job pends forever and
    # the node is not drained for claiming more than it has.
    hardware=$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ UpTime=.*//')
    cat >"$ETC/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh; regenerated on every start.
ClusterName=$CLUSTER
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/slurmd
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# No cgroups needed (containers often lack them).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
ReturnToService=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# sacct must know every job: Snakemake's executor asks it for job states.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT + 2))
# The munge socket for talking to slurmdbd (AuthInfo covers only slurmctld and slurmd).
AccountingStoragePass=$DIR/munge/munge.socket
AccountingStorageTRES=gres/gpu
# Keep sbatch --comment (Snakemake writes rule_<rule>_wildcards_<values> there) in sacct.
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
GresTypes=gpu
NodeName=$node NodeAddr=127.0.0.1 $hardware Gres=gpu:$GPUS State=UNKNOWN
# Two jobs may share a core: Snakemake's jobs spend much of their time starting Python, and a job's second thread
# is often idle; memory stays a hard limit.
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE DefMemPerCPU=1000 OverSubscribe=FORCE:2 State=UP
EOF
    # GPUs with no device behind them (/dev/null under other names, one per GPU): they schedule --gpus jobs,
    # which then run on the CPU.
    mkdir -p "$DIR/dev"
    local i
    for ((i = 0; i < GPUS; i++)); do ln -sfn /dev/null "$DIR/dev/gpu$i"; done
    echo "NodeName=$node Name=gpu File=$DIR/dev/gpu[0-$((GPUS - 1))]" >"$ETC/gres.conf"
    # slurmdbd refuses a config that others can read (it holds the database password).
    (
        umask 077
        cat >"$ETC/slurmdbd.conf" <<EOF
# Written by tests/slurm/cluster.sh; regenerated on every start.
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
PidFile=$(pidfile slurmdbd)
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT + 3))
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    )
}

ours_linked() { [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$SLURM_CONF" ]]; }

link_system_conf() {
    ours_linked && return
    if [[ -e $SYSTEM_CONF || -L $SYSTEM_CONF ]]; then
        die "$SYSTEM_CONF exists (this machine's own Slurm, or a test cluster in another folder): srun inside jobs" \
            "would read it. Stop that cluster or move the file, then start again."
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -s "$SLURM_CONF" "$SYSTEM_CONF"
}

unlink_system_conf() {
    if ours_linked; then rm -f "$SYSTEM_CONF"; fi
}

mysql_root() { mariadb --no-defaults --socket="$MYSQL_SOCKET" -u root "$@"; }

mysql_ready() { mysql_root -e "SELECT 1"; }

start_munged() {
    [[ -s $DIR/munge/munge.key ]] || mungekey --create --keyfile="$DIR/munge/munge.key"
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$(pidfile munged)" --log-file="$LOG/munged.log" --seed-file="$DIR/munge/munged.seed" ||
        die "munged failed to start (log: $LOG/munged.log)"
    wait_for 20 munged test -S "$DIR/munge/munge.socket"
}

start_mariadbd() {
    local data=$DIR/mysql
    if [[ ! -d $data/mysql ]]; then
        say "creating the accounting database in $data"
        mariadb-install-db --no-defaults --datadir="$data" --user=root --auth-root-authentication-method=socket \
            --skip-test-db >"$LOG/mariadb-install.log" 2>&1 || die "mariadb-install-db failed (log: $LOG/mariadb-install.log)"
    fi
    # Not a daemon by itself: detach it; it writes its own pid file. Buffer pool and lock wait as slurmdbd
    # recommends; no native AIO, which containers often lack.
    setsid mariadbd --no-defaults --user=root --datadir="$data" --socket="$MYSQL_SOCKET" \
        --bind-address=127.0.0.1 --port=$((PORT + 3)) --skip-name-resolve --pid-file="$(pidfile mariadbd)" \
        --log-error="$LOG/mariadbd.log" --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
        --innodb-use-native-aio=0 \
        </dev/null >>"$LOG/mariadbd.log" 2>&1 &
    wait_for 60 mariadbd mysql_ready
    mysql_root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

start_slurmdbd() {
    slurmdbd || die "slurmdbd failed to start (log: $LOG/slurmdbd.log)"
    wait_for 60 slurmdbd sacctmgr --noheader list cluster
    if [[ -z $(sacctmgr --noheader --parsable2 list cluster "$CLUSTER" format=cluster) ]]; then
        sacctmgr --immediate add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed"
    fi
}

start_slurmctld() {
    slurmctld || die "slurmctld failed to start (log: $LOG/slurmctld.log)"
    wait_for 60 slurmctld scontrol ping
}

node_ready() {
    local node state
    node=$(hostname -s)
    state=$(sinfo --noheader --nodes="$node" --format=%T)
    # A drain kept in the saved state from an earlier config (this start rewrote it) is lifted; a problem with the
    # current config drains the node again, and the failure shows the reason.
    if [[ $state == drained || $state == draining ]]; then
        scontrol update nodename="$node" state=resume
        return 1
    fi
    [[ $state == idle || $state == mixed || $state == allocated ]]
}

wait_node() {
    if ! (wait_for "$1" slurmd node_ready); then
        scontrol show node "$(hostname -s)" | grep -E "State=|Reason=" >&2 || true
        die "node $(hostname -s) did not become idle in partition $PARTITION (above: its state and reason)"
    fi
}

start_slurmd() {
    slurmd -N "$(hostname -s)" || die "slurmd failed to start (log: $LOG/slurmd.log)"
    wait_node 60
}

cmd_start() {
    need_root
    need_packages
    local daemon pid all_running=1
    for daemon in "${DAEMONS[@]}"; do
        running_pid "$daemon" >/dev/null || all_running=0
    done
    if ((all_running)); then
        link_system_conf
        wait_node 10
        say "already running ($DIR)"
        return
    fi
    write_configs
    link_system_conf
    for daemon in "${DAEMONS[@]}"; do
        if pid=$(running_pid "$daemon"); then
            say "$daemon already running (pid $pid)"
        else
            say "starting $daemon"
            "start_$daemon"
        fi
    done
    say "cluster $CLUSTER up: partition $PARTITION on $(hostname -s); state and logs in $DIR"
}

cmd_stop() {
    local daemon pid i
    if running_pid slurmctld >/dev/null; then
        # Jobs would outlive slurmd; cancel them while the controller can still do it.
        scancel --full --quiet --partition="$PARTITION" || true
    fi
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        daemon=${DAEMONS[i]}
        if pid=$(running_pid "$daemon"); then
            say "stopping $daemon (pid $pid)"
            kill "$pid"
            local deadline=$((SECONDS + 30))
            while kill -0 "$pid" 2>/dev/null; do
                ((SECONDS < deadline)) || {
                    say "$daemon (pid $pid) ignored SIGTERM for 30s; sending SIGKILL"
                    kill -9 "$pid" 2>/dev/null || true
                    break
                }
                sleep 0.2
            done
        fi
        rm -f "$(pidfile "$daemon")"
    done
    unlink_system_conf
    say "stopped ($DIR)"
}

cmd_status() {
    local daemon pid down=0
    for daemon in "${DAEMONS[@]}"; do
        if pid=$(running_pid "$daemon"); then
            say "$daemon running (pid $pid)"
        else
            say "$daemon stopped"
            down=1
        fi
    done
    if running_pid slurmctld >/dev/null; then
        sinfo --format="%P %a %l %D %T %N %G" || true
    fi
    return $((down ? 3 : 0))
}

cmd_clean() {
    need_root
    cmd_stop
    case $DIR in
    / | /tmp | /var | /var/lib | "$HOME") die "refusing to delete $DIR; set TRAJBENCH_SLURM_DIR to a folder of its own" ;;
    esac
    rm -rf "$DIR"
    say "deleted $DIR"
}

case ${1:-} in
install) cmd_install ;;
start) cmd_start ;;
stop) need_root && cmd_stop ;;
status) cmd_status ;;
clean) cmd_clean ;;
env) echo "SLURM_CONF=$SLURM_CONF" ;;
*)
    echo "usage: $0 install|start|stop|status|clean|env   (state folder: \$TRAJBENCH_SLURM_DIR, now $DIR)" >&2
    exit 2
    ;;
esac
