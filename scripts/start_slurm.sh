#!/usr/bin/env bash
# A local single-node SLURM cluster on this machine, for trying hydra/launcher=slurm and for the
# tests marked `slurm` (docs/cluster.md), which run it only when asked (RNNEXP_START_SERVICES=1, as
# .ci/run sets): it writes /etc/slurm/slurm.conf and a munge key and starts daemons.
# Idempotent: a running cluster is left as it is.
#
#   sudo scripts/start_slurm.sh            # prints the partition name when the node is idle
#   scripts/start_slurm.sh --stop          # stops slurmctld, slurmd and munged started here
#
# Needs root and Debian's packages: apt-get install -y slurm-wlm munge
# (slurmctld and slurmd on this host, no slurmdbd: `sacct` has no records; use squeue/scontrol).
# Settings (environment): RNNEXP_SLURM_PARTITION (default "local"), RNNEXP_SLURM_CPUS (CPUs the
# node offers; default 4 per core, at least 8: test jobs are tiny and should not queue behind
# each other), RNNEXP_SLURM_DIR (state, spool and logs; default /var/lib/rnnexp-slurm).
set -euo pipefail

PARTITION=${RNNEXP_SLURM_PARTITION:-local}
STATE=${RNNEXP_SLURM_DIR:-/var/lib/rnnexp-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by rnnexp scripts/start_slurm.sh"
HOST=$(hostname -s)

say() { echo "start_slurm: $*" >&2; }

if [[ "${1:-}" == "--stop" ]]; then
    for daemon in slurmd slurmctld; do
        [[ -f "$STATE/$daemon.pid" ]] && kill "$(cat "$STATE/$daemon.pid")" 2>/dev/null || true
    done
    [[ -f "$STATE/munged.pid" ]] && kill "$(cat "$STATE/munged.pid")" 2>/dev/null || true
    exit 0
fi

for tool in munged slurmctld slurmd sinfo; do
    command -v "$tool" >/dev/null || { say "$tool not found: apt-get install -y slurm-wlm munge"; exit 1; }
done
[[ $(id -u) == 0 ]] || { say "run as root (the daemons and their config live under /etc and /var)"; exit 1; }

mkdir -p "$STATE"/{ctld,spool} /etc/slurm /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
# --- munge: the authentication slurmctld and slurmd share -------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- munged --force --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid "$STATE/munged.pid" 2>/dev/null || true
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# --- slurm.conf: one node (this host), one default partition ------------------------------
if [[ -e "$CONF" ]] && ! grep -qF "$MARK" "$CONF"; then
    say "$CONF exists and was not written by this script; leaving it alone (move it away to use the local cluster)"
    exit 1
fi
CORES=$(nproc)
CPUS=${RNNEXP_SLURM_CPUS:-$(( CORES * 4 > 8 ? CORES * 4 : 8 ))}
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cat > "$CONF.new" <<EOF
$MARK
ClusterName=rnnexp
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it may start again (default 120).
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Offer the configured CPUs even when the hardware has fewer (a local, oversubscribed node).
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
# Quick turnaround for small jobs: short waits between SIGTERM and SIGKILL, finished jobs forgotten soon.
KillWait=5
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
if ! cmp -s "$CONF.new" "$CONF"; then
    mv "$CONF.new" "$CONF"
    changed=1
else
    rm "$CONF.new"
    changed=0
fi

running() { [[ -f "$STATE/$1.pid" ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }
# A node that is up (idle or running jobs) under this config is a working cluster: nothing to do.
if [[ $changed == 0 ]] && timeout 5 sinfo -h -p "$PARTITION" -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "$PARTITION"
    exit 0
fi
if [[ $changed == 1 ]]; then  # restart daemons started under an older config (jobs survive in the state files)
    for daemon in slurmd slurmctld; do
        if running $daemon; then
            pid=$(cat "$STATE/$daemon.pid"); kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    done
fi
running slurmctld || slurmctld
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
running slurmd || slurmd

# Wait for the node to register; a node left DOWN/DRAINED by an earlier unclean stop is resumed.
for i in $(seq 150); do
    state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null | head -1 || true)
    case "$state" in
        idle*|mix*|alloc*) echo "$PARTITION"; exit 0 ;;
        down*|drain*|drng*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.2
done
say "the node did not become idle within 30 s; see $STATE/slurmctld.log and $STATE/slurmd.log"
sinfo >&2 || true
exit 1
