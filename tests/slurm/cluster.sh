#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on this machine, to test profiles/slurm (tests/test_slurm.py):
# munged + slurmctld + slurmd (Debian's slurm-wlm and munge), the node = this host, one partition `debug`.
# No systemd and no cgroups (containers): proctrack/linuxproc, task/none. No accounting database, so no sacct:
# ended jobs stay in `squeue --states=all` for an hour (MinJobAge) and each is logged to
# $PIPELINE_SLURM_DIR/log/jobcomp.log (jobcomp/filetxt).
#
#   tests/slurm/cluster.sh start    # installs slurm-wlm and munge with apt-get if missing (needs root), writes the
#                                   # config, starts the daemons, waits until the node is idle; prints SLURM_CONF
#   tests/slurm/cluster.sh status   # exit 0 when the node answers and is usable
#   tests/slurm/cluster.sh stop     # stops the daemons this script started and removes its folder
#   tests/slurm/cluster.sh env      # prints `export SLURM_CONF=...` (eval "$(tests/slurm/cluster.sh env)")
#
# Everything (config, munge key and socket, state, spool, logs, pid files) lives in $PIPELINE_SLURM_DIR
# (default /tmp/pipeline-slurm). The one thing outside it: /etc/slurm/slurm.conf, SLURM's default config path, is
# made a symlink to this cluster's config (removed by `stop`), because snakemake's slurm-jobstep plugin drops every
# SLURM_* variable, SLURM_CONF included, before the `srun` that runs a rule inside its job, and srun then reads
# the default path. So start refuses to run where /etc/slurm/slurm.conf is a real cluster's config.
# The client commands (sinfo, sbatch, squeue) find this cluster through that path or through
# SLURM_CONF=$PIPELINE_SLURM_DIR/etc/slurm.conf.
# Other settings: PIPELINE_SLURM_PORT (slurmctld's port, default 6817; slurmd takes the next one),
# PIPELINE_SLURM_WAIT (seconds to wait for the node, default 60), PIPELINE_SLURM_KEEP=1 (stop keeps the folder,
# e.g. to read the logs).
set -euo pipefail

DIR=${PIPELINE_SLURM_DIR:-/tmp/pipeline-slurm}
PORT=${PIPELINE_SLURM_PORT:-6817}
WAIT=${PIPELINE_SLURM_WAIT:-60}
CONF=$DIR/etc/slurm.conf
ETC_CONF=/etc/slurm/slurm.conf
export SLURM_CONF=$CONF
NODE=$(hostname -s)

die() { echo "cluster.sh: error: $*" >&2; exit 1; }
say() { echo "cluster.sh: $*"; }

pid_alive() {  # pid_alive <pidfile>: the daemon of the pid file (named as the file) runs
    local pid
    [[ -s $1 ]] && pid=$(cat "$1") && kill -0 "$pid" 2>/dev/null \
        && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$(basename "$1" .pid)" ]]
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    ((${#missing[@]})) || return 0
    [[ $(id -u) == 0 ]] || die "${missing[*]} missing; install them (apt-get install slurm-wlm munge) or run as root"
    command -v apt-get >/dev/null || die "${missing[*]} missing and no apt-get here (this script expects Debian/Ubuntu)"
    say "installing slurm-wlm and munge with apt-get (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    # keep the packages' own services from starting (there is no init system to run them; ours are started below)
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    local ok=0
    "${apt[@]}" install --no-install-recommends slurm-wlm munge >"$DIR.apt.log" 2>&1 && ok=1
    if ((!ok)); then  # stale or empty package lists: update once and retry
        "${apt[@]}" update >>"$DIR.apt.log" 2>&1 || true
        "${apt[@]}" install --no-install-recommends slurm-wlm munge >>"$DIR.apt.log" 2>&1 && ok=1
    fi
    ((made_policy)) && rm -f "$policy"
    ((ok)) || { tail -20 "$DIR.apt.log" >&2; die "apt-get install slurm-wlm munge failed (log: $DIR.apt.log)"; }
    rm -f "$DIR.apt.log"
}

write_config() {
    mkdir -p "$DIR"/{etc,munge,state,spool,log,run}
    chmod 700 "$DIR/munge"
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)  # a bit under the total
    [[ -s $DIR/munge/munge.key ]] || {
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        chmod 400 "$DIR/munge/munge.key"
    }
    cat >"$CONF" <<EOF
# written by tests/slurm/cluster.sh: a single-node test cluster (no cgroups, no systemd, no accounting database)
ClusterName=pipeline-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

link_etc_conf() {  # /etc/slurm/slurm.conf -> $CONF (see the top), unless it is another cluster's
    if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then
        return 0
    elif [[ -e $ETC_CONF || -L $ETC_CONF ]]; then
        die "$ETC_CONF exists (a real SLURM cluster's config?); this test cluster needs that path" \
            "(for the srun inside its jobs): run it on a machine without one"
    fi
    mkdir -p "$(dirname "$ETC_CONF")" && ln -s "$CONF" "$ETC_CONF" || die "cannot link $ETC_CONF to $CONF"
}

node_state() { sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -1; }

cmd_status() {
    local bad=0 name
    for name in munged slurmctld slurmd; do
        if pid_alive "$DIR/run/$name.pid"; then
            echo "$name: running (pid $(cat "$DIR/run/$name.pid"))"
        else
            echo "$name: not running"; bad=1
        fi
    done
    local state
    state=$(node_state || true)
    echo "node $NODE: ${state:-no answer}"
    echo "SLURM_CONF=$CONF"
    ((!bad)) && [[ $state =~ ^(idle|mixed|allocated|completing) ]]
}

start_daemon() {  # start_daemon <name> <command...>: unless already running
    local name=$1; shift
    pid_alive "$DIR/run/$name.pid" && return 0
    "$@" || die "$name did not start (log: $DIR/log/$name.log)"
}

cmd_start() {
    install_packages
    local running=0 name
    for name in munged slurmctld slurmd; do pid_alive "$DIR/run/$name.pid" && running=1; done
    ((running)) || { rm -rf "$DIR"; write_config; }
    link_etc_conf
    start_daemon munged munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
    munge -S "$DIR/munge/munge.socket" -n </dev/null | unmunge -S "$DIR/munge/munge.socket" >/dev/null \
        || die "munge does not work (log: $DIR/log/munged.log)"
    start_daemon slurmctld slurmctld -f "$CONF"
    start_daemon slurmd slurmd -f "$CONF" -N "$NODE"
    local t state=""
    for ((t = 0; t < WAIT; t++)); do
        state=$(node_state || true)
        case $state in
            idle | mixed | allocated | completing) break ;;
            down* | drain* | fail* | "" | unknown* | *) ;;
        esac
        # a node that registered with a problem stays down: resume it once it answers
        [[ $state == down* || $state == drain* ]] && scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
        sleep 1
    done
    if [[ ! $state =~ ^(idle|mixed|allocated|completing) ]]; then
        echo "--- slurmctld.log" >&2; tail -15 "$DIR/log/slurmctld.log" >&2 2>/dev/null || true
        echo "--- slurmd.log" >&2; tail -15 "$DIR/log/slurmd.log" >&2 2>/dev/null || true
        scontrol show node "$NODE" 2>/dev/null | grep -i -E 'State|Reason' >&2 || true
        die "node $NODE is '${state:-not answering}' after ${WAIT}s (logs above; $DIR/log)"
    fi
    say "node $NODE is $state; partition debug; use: export SLURM_CONF=$CONF"
}

cmd_stop() {
    local name pid t
    # slurmd first (it ends its jobs), then slurmctld, then munged; only the processes of our pid files
    for name in slurmd slurmctld munged; do
        pid_alive "$DIR/run/$name.pid" || continue
        pid=$(cat "$DIR/run/$name.pid")
        kill "$pid" 2>/dev/null || true
        for ((t = 0; t < 100; t++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && { kill -9 "$pid" 2>/dev/null || true; }
        say "stopped $name (pid $pid)"
    done
    if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then rm -f "$ETC_CONF"; fi
    if [[ ${PIPELINE_SLURM_KEEP:-0} == 1 ]]; then
        say "kept $DIR"
    else
        rm -rf "$DIR"
    fi
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
