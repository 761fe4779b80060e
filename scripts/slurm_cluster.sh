#!/usr/bin/env bash
# Start or stop a single-node SLURM cluster on loopback (munge + slurmctld + slurmd on 127.0.0.1),
# enough to send dwx sweeps through `hydra/launcher=submitit_slurm` on one machine (tests, CI, demos).
#
#   scripts/slurm_cluster.sh start    # write slurm.conf, start munged, slurmctld, slurmd; wait until idle
#   scripts/slurm_cluster.sh stop     # stop the daemons this script started (by their pid files)
#   scripts/slurm_cluster.sh status   # sinfo
#   eval "$(scripts/slurm_cluster.sh env)"   # point this shell's sbatch, squeue, sacct, sinfo at it
#
# Needs Debian's slurm-wlm and munge (apt-get install -y slurm-wlm munge) and root. Every daemon
# listens on 127.0.0.1 only. State and config live in $DWX_SLURM_STATE (default /var/lib/dwx-slurm):
# the config is $DWX_SLURM_STATE/slurm.conf, never the system's /etc/slurm/slurm.conf (left untouched).
# The daemons get it with -f; clients (sbatch, squeue, sacct, sinfo: submitit calls them from the
# environment of `dwx run`) find it through SLURM_CONF, which `env` prints and `start` reminds of.
set -euo pipefail

STATE=$(realpath -m "${DWX_SLURM_STATE:-/var/lib/dwx-slurm}")  # absolute: SLURM_CONF is used from anywhere
CONF=$STATE/slurm.conf
export SLURM_CONF=$CONF  # for the clients this script runs (sinfo, scontrol)

die() { echo "slurm_cluster: $*" >&2; exit 1; }

env_line() { printf 'export SLURM_CONF=%q\n' "$CONF"; }

write_conf() {
  local cpus mem
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)  # [MB], leave 20% to the system
  mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/log"
  cat >"$CONF" <<EOF
# Written by dwx scripts/slurm_cluster.sh: a single-node cluster on loopback.
ClusterName=dwx
SlurmctldHost=localhost(127.0.0.1)
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
MpiDefault=none
SchedulerType=sched/backfill
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  [ "$(id -u)" = 0 ] || die "run as root (the daemons run as root on loopback)"
  command -v slurmctld >/dev/null || die "slurm is not installed: apt-get install -y slurm-wlm munge"
  write_conf
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  if ! pgrep -u munge -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged
  fi
  if [ ! -f "$STATE/slurmctld.pid" ] || ! kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
    slurmctld -f "$CONF" -i  # -i: ignore state left by an earlier cluster
  fi
  if [ ! -f "$STATE/slurmd.pid" ] || ! kill -0 "$(cat "$STATE/slurmd.pid")" 2>/dev/null; then
    slurmd -f "$CONF"
  fi
  for _ in $(seq 1 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
      echo "slurm_cluster: up ($(sinfo -h -o '%P %D %T %c cpus')); clients need: $(env_line)"
      return 0
    fi
    scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
    sleep 1
  done
  die "the node did not come up; see $STATE/log/"
}

stop() {
  local pidfile
  for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid"; do
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill "$(cat "$pidfile")"
    fi
  done
  echo "slurm_cluster: stopped (munged left running; it serves other munge users too)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  env) env_line ;;
  *) die "usage: $0 start|stop|status|env" ;;
esac
