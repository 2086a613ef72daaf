#!/usr/bin/env bash
# A one-node SLURM on this machine, for the tests and for trying --executor slurm (docs/cluster.md).
# Idempotent: does nothing when a scheduler already answers. Needs root and Debian's slurm-wlm and
# munge (make system-deps installs them). Writes /etc/slurm/slurm.conf only where there is none or
# where this script wrote it: a real cluster's configuration is never touched.
# Accounting is off (no slurmdbd), so sacct has nothing: read job states with squeue / scontrol.
set -euo pipefail

MARK="# written by dlbench scripts/slurm-up.sh"
CONF=/etc/slurm/slurm.conf

answers() { scontrol ping 2>/dev/null | grep -q "is UP" && sinfo -h -o %t 2>/dev/null | grep -qE "^(idle|mix|alloc)"; }

if answers; then exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "slurm-up: needs root (it starts munged, slurmctld and slurmd)" >&2; exit 1; fi
for cmd in munged slurmctld slurmd scontrol sinfo; do
  command -v "$cmd" >/dev/null || { echo "slurm-up: $cmd not found: apt-get install slurm-wlm munge (make system-deps)" >&2; exit 1; }
done
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  echo "slurm-up: $CONF exists and was not written by this script; start that cluster's own daemons" >&2; exit 1
fi

host=$(hostname -s)
# the node as slurmd sees it (CPUs, sockets, cores, memory), so the controller accepts it; both daemons on
# the loopback address, so nothing depends on the host name resolving
node="$(slurmd -C | head -1) NodeAddr=127.0.0.1"
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > "$CONF" <<CONF
$MARK
ClusterName=dlbench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=10
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

# munged as its own user, with the key the package made
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
[ -f /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
pgrep -x munged >/dev/null || runuser -u munge -- munged
# -c: a controller started here begins with no jobs (a previous session's tasks, recovered from the state
# directory, would run again against folders that may be gone)
pgrep -x slurmctld >/dev/null || slurmctld -c
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq 60); do
  if answers; then exit 0; fi
  sleep 0.5
done
echo "slurm-up: SLURM did not come up within 30 s; see /var/log/slurm/slurmctld.log and slurmd.log:" >&2
tail -n 5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
