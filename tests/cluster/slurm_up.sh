#!/usr/bin/env bash
# A single-node SLURM cluster on localhost for the cluster tests: Debian 12's slurm-wlm and munge, no systemd,
# fake GPUs (count-only GRES, each backed by a device node because Slurm 22.05 drops file-less GPUs).
# Run as root. Re-running it rewrites the configuration and starts whatever is not running.
# Knobs: NGPU (fake GPUs, 2), GPU_TYPE (GRES type, e.g. h100; none by default), PARTITION (main),
# ACCOUNTING=1 adds slurmdbd + MariaDB so that sacct works (about +25 s, mostly the packages).
set -euo pipefail
T0=$(date +%s.%N)
NGPU=${NGPU:-2}
GPU_TYPE=${GPU_TYPE:-}
PARTITION=${PARTITION:-main}
ACCOUNTING=${ACCOUNTING:-0}
MARKER="# written by tests/cluster/slurm_up.sh"

if [ -f /etc/slurm/slurm.conf ] && ! grep -qF "$MARKER" /etc/slurm/slurm.conf; then
    echo "/etc/slurm/slurm.conf belongs to another cluster: not touching it" >&2
    exit 2
fi

# ---- packages ----------------------------------------------------------------------------------------------
packages=()
command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    || packages+=(slurm-wlm slurmctld slurmd slurm-client)
command -v munged >/dev/null || packages+=(munge)
if [ "$ACCOUNTING" = 1 ]; then
    command -v slurmdbd >/dev/null || packages+=(slurmdbd)
    command -v mariadbd >/dev/null || packages+=(mariadb-server)
fi
if [ ${#packages[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

# ---- munge (systemd would create /run/munge) ---------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n </dev/null | unmunge >/dev/null

# ---- slurm.conf, gres.conf, cgroup.conf --------------------------------------------------------------------
HOST=$(hostname -s)
CPUS=$(getconf _NPROCESSORS_ONLN)   # not nproc: it honours OMP_NUM_THREADS, which the tests set to 1
REALMEM=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)   # slurmd drains a node that has less
install -d -m 0755 /etc/slurm
install -d -o slurm -g slurm -m 0755 /var/lib/slurm/slurmctld /var/log/slurm
install -d -m 0755 /var/lib/slurm/slurmd

# proctrack/cgroup kills every process of a cancelled job (cgroup v1 freezer, no systemd needed);
# proctrack/linuxproc works anywhere but can leave a job's processes behind.
if [ -d /sys/fs/cgroup/freezer ]; then
    PROCTRACK=proctrack/cgroup TASKPLUGIN=task/cgroup,task/affinity
    printf '%s\n' "$MARKER" CgroupPlugin=cgroup/v1 CgroupAutomount=no CgroupMountpoint=/sys/fs/cgroup \
        ConstrainCores=no ConstrainRAMSpace=no ConstrainDevices=no >/etc/slurm/cgroup.conf
else
    PROCTRACK=proctrack/linuxproc TASKPLUGIN=task/affinity
    rm -f /etc/slurm/cgroup.conf
fi

if [ "$ACCOUNTING" = 1 ]; then
    ACCOUNTING_CONF="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoreFlags=job_comment
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux"
else
    ACCOUNTING_CONF="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

cat >/etc/slurm/slurm.conf <<CONF
$MARKER
ClusterName=octci
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=$PROCTRACK
TaskPlugin=$TASKPLUGIN
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/lib/slurm/slurmd
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# a job without --mem would otherwise get the whole node's memory
DefMemPerCPU=1000
# finished jobs stay visible to squeue for 5 min (the plugin's squeue status mode needs >= 3 x its first wait)
MinJobAge=300
$ACCOUNTING_CONF
# every finished job, one line each: the evidence when there is no accounting database
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REALMEM Gres=gpu:${GPU_TYPE:+$GPU_TYPE:}$NGPU State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

FAKEDEV=/var/lib/slurm/fakegpu   # one /dev/null clone per fake GPU
install -d -m 0755 "$FAKEDEV"
for i in $(seq 0 $((NGPU - 1))); do
    [ -c "$FAKEDEV/gpu$i" ] || mknod -m 0666 "$FAKEDEV/gpu$i" c 1 3
done
printf '%s\nAutoDetect=off\nNodeName=%s Name=gpu %sFile=%s/gpu[0-%d]\n' \
    "$MARKER" "$HOST" "${GPU_TYPE:+Type=$GPU_TYPE }" "$FAKEDEV" $((NGPU - 1)) >/etc/slurm/gres.conf

# ---- accounting database (optional) ------------------------------------------------------------------------
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [ "$ACCOUNTING" = 1 ]; then
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    if ! mariadb-admin ping >/dev/null 2>&1; then
        /usr/sbin/mariadbd --user=mysql --skip-networking --pid-file=/run/mysqld/mysqld.pid \
            --socket=/run/mysqld/mysqld.sock >/var/log/slurm/mariadb.log 2>&1 &
        for _ in $(seq 100); do mariadb-admin ping >/dev/null 2>&1 && break; sleep 0.1; done
    fi
    mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'octci';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
    cat >/etc/slurm/slurmdbd.conf <<CONF
$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=octci
StorageParameters=unix_socket=/run/mysqld/mysqld.sock
CONF
    chown slurm:slurm /etc/slurm/slurmdbd.conf
    chmod 0600 /etc/slurm/slurmdbd.conf   # slurmdbd refuses a readable one
    if ! running /run/slurmdbd.pid; then
        /usr/sbin/slurmdbd
        for _ in $(seq 100); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.1; done
    fi
    sacctmgr -i add cluster octci >/dev/null 2>&1 || true
    sacctmgr -i add account octci Description=ci Organization=ci >/dev/null 2>&1 || true
    sacctmgr -i add user "$(id -un)" Account=octci DefaultAccount=octci >/dev/null 2>&1 || true
fi

# ---- daemons (they daemonize themselves) -------------------------------------------------------------------
# a configuration change of nodes, GRES or accounting needs a restart, not a reconfigure
for pf in /run/slurmd.pid /run/slurmctld.pid; do
    if running "$pf"; then
        pid=$(cat "$pf"); kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pf"
done
/usr/sbin/slurmctld
/usr/sbin/slurmd

# ---- wait for the node -------------------------------------------------------------------------------------
for _ in $(seq 120); do
    case "$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)" in
        idle* | mixed* | allocated*) break ;;
        drain* | down*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.25
done
case "$(sinfo -h -n "$HOST" -o %T)" in
    idle* | mixed* | allocated*) ;;
    *)
        scontrol show node "$HOST" >&2
        tail -n 30 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2
        exit 1
        ;;
esac
[ "$ACCOUNTING" != 1 ] || sacct -n -X -o JobID >/dev/null   # fails when accounting is off
sinfo -N -o '%N %T %c %m %G'
awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "slurm up in %.1f s\n", b - a}'
