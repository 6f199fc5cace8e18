#!/usr/bin/env bash
# slurm-cluster.sh - htmap's single-node Slurm test cluster on loopback.
#
# Installs (if missing) the Debian packages slurmctld slurmd slurm-client munge,
# writes a slurm.conf for this machine, starts munged + slurmctld + slurmd bound
# to 127.0.0.1 and waits (with a deadline) until the node takes jobs.
# Debian 12 (Slurm 22.05) is what this is tested on. Needs root; no systemd.
#
# Usage: scripts/slurm-cluster.sh start|stop|restart|status|env
#   start    idempotent: a no-op (~0.1 s) when the cluster is up with the same config;
#            restarts the daemons (and wipes job state) when the config changed
#   stop     cancels all jobs, stops slurmd, slurmctld, and munged if we started it
#   status   exit 0 when slurmctld, slurmd and munge work (prints sinfo)
#   env      prints "export SLURM_CONF=..." for clients
#
# Settings (environment):
#   HTMAP_SLURM_DIR            conf/state/logs directory          [/tmp/htmap-slurm]
#   HTMAP_SLURM_CPUS           CPUs of the node                   [nproc]
#   HTMAP_SLURM_MEM_MB         RealMemory of the node             [90% of MemTotal]
#   HTMAP_SLURM_MAX_ARRAY_SIZE MaxArraySize (largest index + 1)   [1001, Slurm's default]
#   HTMAP_SLURM_CGROUP         auto|v1|v2|0: cgroup v1 makes --mem real (OUT_OF_MEMORY)
#                              auto = v1 when /sys/fs/cgroup/memory is a v1 hierarchy  [auto]
#   HTMAP_SLURM_MIN_JOB_AGE    seconds finished jobs stay in squeue [3600]
#   HTMAP_SLURM_CTLD_PORT / HTMAP_SLURM_SLURMD_PORT                [6817 / 6818]
#   HTMAP_SLURM_LINK_ETC       1: symlink /etc/slurm/slurm.conf to the generated file
#                              (only when absent or already a symlink)          [1]
#   HTMAP_SLURM_FIX_HOSTS      1: add "127.0.1.1 <hostname>" to /etc/hosts when the
#                              hostname does not resolve to loopback            [1]
#   HTMAP_SLURM_CRED_EXPIRE    credential lifetime; a requeued job waits this long before
#                              it may run again                   [10; Slurm's default 120]
#   HTMAP_SLURM_TIMEOUT        seconds to wait for readiness      [60]
#   HTMAP_SLURM_NO_INSTALL     1: never run apt-get; fail when binaries are missing [0]
#
# Exit status: 0 ok; 1 failure (message on stderr); 2 cannot run here (not root,
# no apt-get and no Slurm binaries): callers such as the test suite skip on 2.
set -euo pipefail

CMD=${1:-start}
DIR=${HTMAP_SLURM_DIR:-/tmp/htmap-slurm}
CONF=$DIR/etc/slurm.conf
CTLD_PORT=${HTMAP_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${HTMAP_SLURM_SLURMD_PORT:-6818}
TIMEOUT=${HTMAP_SLURM_TIMEOUT:-60}
MAX_ARRAY_SIZE=${HTMAP_SLURM_MAX_ARRAY_SIZE:-1001}
export SLURM_CONF=$CONF

log() { echo "[slurm-cluster] $*" >&2; }
die() { echo "[slurm-cluster] ERROR: $*" >&2; exit 1; }
cannot() { echo "[slurm-cluster] CANNOT RUN HERE: $*" >&2; exit 2; }

# alive PID NAME: the process exists, is not a zombie, and its comm is NAME
# (PID 1 of some containers reaps slowly; the comm check guards against PID reuse)
alive() {
    local pid=$1 name=$2 stat comm
    [[ -n $pid && $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
    [[ $stat == Z* ]] && return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$name" ]]
}
pid_of() { cat "$1" 2>/dev/null || true; }

# stop_pid PIDFILE NAME: SIGTERM, then SIGKILL after 15 s
stop_pid() {
    local pidfile=$1 name=$2 pid
    pid=$(pid_of "$pidfile")
    if alive "$pid" "$name"; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 150); do alive "$pid" "$name" || break; sleep 0.1; done
        if alive "$pid" "$name"; then
            log "$name did not exit, sending SIGKILL to $pid"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    rm -f "$pidfile"
}

ctld_up() { timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; }

munge_ok() { echo | timeout 5 munge 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; }

do_stop() {
    if [[ -f $CONF ]] && command -v squeue >/dev/null && ctld_up; then
        local jobs
        jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ' || true)
        if [[ -n ${jobs// /} ]]; then
            log "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            timeout 10 scancel $jobs 2>/dev/null || true
            for _ in $(seq 60); do
                [[ -z $(timeout 5 squeue -h -t R,CG,S -o %A 2>/dev/null) ]] && break
                sleep 0.25
            done
        fi
    fi
    stop_pid "$DIR/run/slurmd.pid" slurmd
    stop_pid "$DIR/run/slurmctld.pid" slurmctld
    if [[ -f $DIR/run/munged.ours ]]; then      # only stop munged if we started it
        stop_pid "$DIR/munge/munged.pid" munged
        rm -f "$DIR/run/munged.ours"
    fi
    log "stopped"
}

do_status() {
    local ok=0 d
    for d in slurmctld slurmd; do
        if alive "$(pid_of "$DIR/run/$d.pid")" "$d"; then echo "$d: running (pid $(pid_of "$DIR/run/$d.pid"))"
        else echo "$d: stopped"; ok=1; fi
    done
    if munge_ok; then echo "munge: ok"; else echo "munge: not working"; ok=1; fi
    if [[ $ok == 0 ]]; then
        timeout 5 sinfo 2>/dev/null || ok=1
        timeout 5 scontrol show config 2>/dev/null | grep -E '^(MaxArraySize|TaskPlugin|SLURM_VERSION) ' || true
    fi
    return $ok
}

binaries_present() {
    local b
    for b in slurmctld slurmd sbatch squeue scontrol sinfo munged munge mungekey; do
        command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]] || return 1
    done
}

install_pkgs() {
    binaries_present && return 0
    [[ ${HTMAP_SLURM_NO_INSTALL:-0} == 1 ]] && cannot "Slurm/munge binaries are missing and HTMAP_SLURM_NO_INSTALL=1"
    command -v apt-get >/dev/null 2>&1 \
        || cannot "Slurm/munge binaries are missing and apt-get is not available (not Debian/Ubuntu?); install slurmctld, slurmd, slurm-client and munge yourself"
    log "installing Debian packages slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    local pkgs=(slurmctld slurmd slurm-client munge)
    if ! apt-get install -y -q --no-install-recommends "${pkgs[@]}" >"$DIR/log/apt.log" 2>&1; then
        apt-get update -q >>"$DIR/log/apt.log" 2>&1 || true
        apt-get install -y -q --no-install-recommends "${pkgs[@]}" >>"$DIR/log/apt.log" 2>&1 \
            || die "apt-get install failed, see $DIR/log/apt.log"
    fi
    binaries_present || die "packages installed but binaries still missing, see $DIR/log/apt.log"
}

ensure_loopback_hostname() {
    # CommunicationParameters=NoInAddrAny makes every daemon (and srun) bind to the
    # address `hostname` resolves to, so it must be loopback.
    local h addr
    h=$(hostname)
    addr=$(getent ahostsv4 "$h" 2>/dev/null | awk 'NR==1{print $1}' || true)
    [[ $addr == 127.* ]] && return 0
    [[ ${HTMAP_SLURM_FIX_HOSTS:-1} == 1 ]] \
        || die "hostname $h resolves to '${addr:-nothing}', not loopback (set HTMAP_SLURM_FIX_HOSTS=1)"
    log "hostname $h resolves to '${addr:-nothing}', adding '127.0.1.1 $h' to /etc/hosts"
    printf '127.0.1.1\t%s %s  # added by htmap scripts/slurm-cluster.sh\n' "$h" "$(hostname -s)" >>/etc/hosts
    addr=$(getent ahostsv4 "$h" 2>/dev/null | awk 'NR==1{print $1}' || true)
    [[ $addr == 127.* ]] || die "hostname $h still resolves to $addr"
}

start_munge() {
    if munge_ok; then return 0; fi
    id munge >/dev/null 2>&1 || die "user munge missing (munge package broken?)"
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        install -d -o munge -g munge -m 0700 /etc/munge
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 "$DIR/munge"
    # a stale socket from a killed munged makes a new one refuse to start
    if [[ -S /run/munge/munge.socket.2 ]] && ! alive "$(pid_of "$DIR/munge/munged.pid")" munged; then
        rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    fi
    runuser -u munge -- /usr/sbin/munged --log-file="$DIR/munge/munged.log" \
        --pid-file="$DIR/munge/munged.pid" || die "munged failed, see $DIR/munge/munged.log"
    for _ in $(seq 50); do munge_ok && break; sleep 0.1; done
    munge_ok || die "munge not working, see $DIR/munge/munged.log"
    pid_of "$DIR/munge/munged.pid" >"$DIR/run/munged.ours"
    log "munged started (pid $(pid_of "$DIR/munge/munged.pid"))"
}

cgroup_mode() {
    local cg=${HTMAP_SLURM_CGROUP:-auto}
    if [[ $cg == auto ]]; then
        # cgroup v1 with a memory controller: Slurm's cgroup/v1 works without systemd
        if [[ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]] && [[ -w /sys/fs/cgroup/memory ]]; then cg=v1; else cg=0; fi
    fi
    echo "$cg"
}

# write_conf: returns 0 when the config changed, 1 when unchanged
write_conf() {
    local node cpus mem memtotal nproc_real tmpdisk extra="" cg proctrack=proctrack/linuxproc task=task/none
    cg=$(cgroup_mode)
    node=$(hostname -s)
    nproc_real=$(nproc)
    cpus=${HTMAP_SLURM_CPUS:-$nproc_real}
    memtotal=$(awk '/^MemTotal:/{print int($2/1024)}' /proc/meminfo)
    mem=${HTMAP_SLURM_MEM_MB:-$(( memtotal * 90 / 100 ))}
    # TmpDisk (MB) is what --tmp (htmap's request_disk) is checked against; TmpFS is /tmp
    tmpdisk=$(df -Pm /tmp 2>/dev/null | awk 'NR==2{print int($2 * 50 / 100)}')
    [[ $tmpdisk =~ ^[0-9]+$ ]] || tmpdisk=1024
    [[ $MAX_ARRAY_SIZE =~ ^[0-9]+$ ]] || die "HTMAP_SLURM_MAX_ARRAY_SIZE must be a number"
    # declaring more CPUs/memory than the hardware has needs config_overrides
    if (( cpus > nproc_real || mem > memtotal )); then extra="SlurmdParameters=config_overrides"; fi
    case $cg in
        0|no|none) rm -f "$DIR/etc/cgroup.conf" ;;
        v1|v2)
            proctrack=proctrack/cgroup; task=task/cgroup
            printf 'CgroupPlugin=cgroup/%s\nCgroupAutomount=yes\nConstrainCores=no\nConstrainRAMSpace=yes\nConstrainSwapSpace=no\n' \
                "$cg" >"$DIR/etc/cgroup.conf.new"
            if cmp -s "$DIR/etc/cgroup.conf.new" "$DIR/etc/cgroup.conf" 2>/dev/null; then rm -f "$DIR/etc/cgroup.conf.new"
            else mv "$DIR/etc/cgroup.conf.new" "$DIR/etc/cgroup.conf"; fi ;;
        *) die "HTMAP_SLURM_CGROUP must be auto, 0, v1 or v2" ;;
    esac
    cat >"$CONF.new" <<EOF
# generated by htmap scripts/slurm-cluster.sh - single node test cluster on loopback
ClusterName=htmaptest
SlurmctldHost=${node}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
# bind daemons (and srun) to the address of \`hostname\` (loopback), not 0.0.0.0
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job (scontrol requeue, htmap vacate/hold of a running component) waits
# cred_expire+1 s before it may start again; Slurm's default is 120 s
AuthInfo=cred_expire=${HTMAP_SLURM_CRED_EXPIRE:-10}
CredType=cred/munge
StateSaveLocation=${DIR}/state
SlurmdSpoolDir=${DIR}/spool
SlurmctldPidFile=${DIR}/run/slurmctld.pid
SlurmdPidFile=${DIR}/run/slurmd.pid
SlurmctldLogFile=${DIR}/log/slurmctld.log
SlurmdLogFile=${DIR}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# cgroups: ${cg} (v1: --mem is enforced and jobs over it end OUT_OF_MEMORY); no accounting
ProctrackType=${proctrack}
TaskPlugin=${task}
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# the final state of every job is appended here (sacct needs slurmdbd, absent here)
JobCompType=jobcomp/filetxt
JobCompLoc=${DIR}/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=100
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1,sched_min_interval=0,batch_sched_delay=0,default_queue_depth=1000
# An Epilog makes slurmd send MESSAGE_EPILOG_COMPLETE, which runs the main scheduler
# at once; without it a freed CPU waits for the next backfill pass: ~5x slower arrays.
Epilog=/bin/true
# reject impossible requests at submit instead of leaving them pending forever
EnforcePartLimits=ALL
MaxArraySize=${MAX_ARRAY_SIZE}
MaxJobCount=200000
MinJobAge=${HTMAP_SLURM_MIN_JOB_AGE:-3600}
KillWait=2
InactiveLimit=0
ReturnToService=2
MailProg=/bin/true
MpiDefault=none
${extra}
NodeName=${node} NodeAddr=127.0.0.1 NodeHostname=${node} CPUs=${cpus} RealMemory=${mem} TmpDisk=${tmpdisk} State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
EOF
    if [[ -f $CONF ]] && cmp -s "$CONF" "$CONF.new"; then
        rm -f "$CONF.new"; return 1
    fi
    mv "$CONF.new" "$CONF"; return 0
}

link_etc() {
    [[ ${HTMAP_SLURM_LINK_ETC:-1} == 1 ]] || return 0
    mkdir -p /etc/slurm
    if [[ -L /etc/slurm/slurm.conf || ! -e /etc/slurm/slurm.conf ]]; then
        ln -sfn "$CONF" /etc/slurm/slurm.conf
    elif ! cmp -s /etc/slurm/slurm.conf "$CONF"; then
        log "WARNING: /etc/slurm/slurm.conf is a real file; not replacing it. Clients need SLURM_CONF=$CONF"
    fi
}

wait_ready() {
    # $1: epoch seconds at which we (re)started slurmd, or 0. slurmctld keeps showing a
    # node "idle" for SlurmdTimeout after its slurmd died, so when we started slurmd we
    # also wait for its registration (SlurmdStartTime).
    local sd_t0=${1:-0} node deadline st sst
    node=$(hostname -s)
    deadline=$(( $(date +%s) + TIMEOUT ))
    while :; do
        st=$(timeout 5 sinfo -h -n "$node" -o %T 2>/dev/null || true)
        case $st in
            idle|mixed|allocated|completing)
                [[ $sd_t0 == 0 ]] && return 0
                sst=$(timeout 5 scontrol show node "$node" 2>/dev/null | grep -oE 'SlurmdStartTime=[^ ]+' | cut -d= -f2 || true)
                if [[ -n $sst && $sst != None ]] && (( $(date -d "$sst" +%s 2>/dev/null || echo 0) >= sd_t0 - 1 )); then
                    return 0
                fi ;;
            *drain*|down*|*fail*)
                timeout 5 scontrol update nodename="$node" state=resume 2>/dev/null || true ;;
        esac
        if (( $(date +%s) >= deadline )); then
            log "node state: '${st}'"
            tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
            die "cluster not ready after ${TIMEOUT}s"
        fi
        sleep 0.1
    done
}

do_start() {
    [[ $(id -u) == 0 ]] || cannot "must run as root (it installs packages and runs slurmctld/slurmd as root); try: sudo $0 start"
    local t0 changed=0 sd_t0=0
    t0=$(date +%s.%N)
    mkdir -p "$DIR"/{etc,log,run,state,spool}
    install_pkgs
    ensure_loopback_hostname
    start_munge
    if write_conf; then changed=1; fi
    link_etc
    if [[ $changed == 1 ]]; then
        if alive "$(pid_of "$DIR/run/slurmctld.pid")" slurmctld || alive "$(pid_of "$DIR/run/slurmd.pid")" slurmd; then
            log "configuration changed: restarting the daemons (job state is wiped)"
            stop_pid "$DIR/run/slurmd.pid" slurmd
            stop_pid "$DIR/run/slurmctld.pid" slurmctld
        fi
        # old state may reference another node name or layout: start clean
        rm -rf "${DIR:?}/state" "${DIR:?}/spool"
        mkdir -p "$DIR/state" "$DIR/spool"
    fi
    if ! alive "$(pid_of "$DIR/run/slurmctld.pid")" slurmctld; then
        log "starting slurmctld"
        slurmctld -i -f "$CONF" || die "slurmctld failed, see $DIR/log/slurmctld.log"
    fi
    if ! alive "$(pid_of "$DIR/run/slurmd.pid")" slurmd; then
        log "starting slurmd"
        sd_t0=$(date +%s)
        slurmd -f "$CONF" || die "slurmd failed, see $DIR/log/slurmd.log"
    fi
    wait_ready "$sd_t0"
    printf 'export SLURM_CONF=%s\n' "$CONF" >"$DIR/env.sh"
    log "ready in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}') s: $(sinfo -h -o '%P %a %D %T %N' | head -1)"
    echo "export SLURM_CONF=$CONF"
}

case $CMD in
    start) do_start ;;
    stop) do_stop ;;
    restart) do_stop; do_start ;;
    status) do_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) die "usage: $0 start|stop|restart|status|env" ;;
esac
