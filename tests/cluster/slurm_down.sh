#!/usr/bin/env bash
# Stop the daemons tests/cluster/slurm_up.sh started (by pid file), cancelling any job left in the queue:
# SLURM's daemons first, then what they use (accounting database, munge). WIPE=1 also forgets the cluster's
# state and logs.
set -u
stop() {   # stop PIDFILE...: signal them all, then wait for each
    local pids=() pf pid
    for pf in "$@"; do
        [ -f "$pf" ] || continue
        pid=$(cat "$pf")
        kill "$pid" 2>/dev/null && pids+=("$pid") && echo "stopping $pid ($pf)"
        rm -f "$pf"   # a stale pid file breaks the slurmctld package's prerm
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
}
command -v scancel >/dev/null && scancel --user="$(id -un)" 2>/dev/null
stop /run/slurmd.pid /run/slurmctld.pid
stop /run/slurmdbd.pid /run/mysqld/mysqld.pid /run/munge/munged.pid
if [ "${WIPE:-0}" = 1 ]; then
    rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/* /var/log/slurm/*
fi
exit 0
