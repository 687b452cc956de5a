#!/usr/bin/env bash
# Audits this host for running rowhook: one line per item, `ok`, `warn` or `FAIL`,
# with the fix. Exit 1 when something would stop rowhook from running.
#
#   tuning/check.sh [--cores N]     # N: cores you plan to give rowhook (default: all)
set -uo pipefail

cores_wanted=""
if [ "${1:-}" = --cores ]; then cores_wanted=${2:-}; fi
fails=0 warns=0
ok()   { printf 'ok    %s\n' "$*"; }
warn() { printf 'warn  %s\n' "$*"; warns=$((warns + 1)); }
fail() { printf 'FAIL  %s\n' "$*"; fails=$((fails + 1)); }

# Kernel: io_uring arrived in 5.1; glommio needs 5.8 or later.
kernel=$(uname -r)
IFS=.- read -r kmaj kmin _ <<<"$kernel"
if [ "$kmaj" -gt 5 ] || { [ "$kmaj" -eq 5 ] && [ "$kmin" -ge 8 ]; }; then
  ok "kernel $kernel (io_uring needs 5.8+)"
else
  fail "kernel $kernel is older than 5.8: io_uring (glommio) will not work; upgrade the kernel"
fi

# io_uring may be switched off by sysctl (0 = allowed, 1 = root/group only, 2 = off).
if [ -r /proc/sys/kernel/io_uring_disabled ]; then
  v=$(cat /proc/sys/kernel/io_uring_disabled)
  case $v in
    0) ok "kernel.io_uring_disabled = 0" ;;
    1) warn "kernel.io_uring_disabled = 1: only root or the io_uring_group may use io_uring; set it to 0 (tuning/sysctl.conf) or add rowhook's user to kernel.io_uring_group" ;;
    *) fail "kernel.io_uring_disabled = $v: io_uring is off; set kernel.io_uring_disabled = 0 (tuning/sysctl.conf)" ;;
  esac
else
  ok "io_uring not restricted by sysctl (no kernel.io_uring_disabled)"
fi

# Containers often block io_uring with seccomp even when the kernel allows it.
if grep -q '^Seccomp:[[:space:]]*2' /proc/self/status 2>/dev/null; then
  warn "a seccomp filter is active for this shell: if rowhook fails with 'Operation not permitted' at start, allow io_uring_setup/io_uring_enter (Docker: --security-opt seccomp=unconfined or a profile that allows them)"
fi

# memlock: io_uring rings and registered buffers count against it on older kernels.
ml=$(ulimit -l)
if [ "$ml" = unlimited ] || [ "$ml" -ge 65536 ]; then
  ok "memlock limit $ml KiB"
elif [ "$ml" -ge 8192 ]; then
  warn "memlock limit $ml KiB: enough for a few shards; raise it (LimitMEMLOCK=64M in the unit, or memlock in /etc/security/limits.conf) for more"
else
  fail "memlock limit $ml KiB is too small for io_uring buffers; set LimitMEMLOCK=64M (systemd) or 'rowhook - memlock 65536' in /etc/security/limits.conf"
fi

# Open files: one per webhook connection.
nf=$(ulimit -n)
if [ "$nf" = unlimited ] || [ "$nf" -ge 65536 ]; then ok "open files limit $nf"
else warn "open files limit $nf: dispatcher.max_connections sockets per receiver need headroom; set LimitNOFILE=65536"
fi

# Cores: one source core plus at least one delivery shard.
ncpu=$(nproc)
want=${cores_wanted:-$ncpu}
if [ "$ncpu" -ge 2 ]; then ok "$ncpu CPU(s) available to this process (rowhook uses 1 source core + $((want - 1)) shard(s) on $want)"
else warn "only $ncpu CPU available: the source core and the delivery shard share it; latency will suffer"
fi
isolated=$(cat /sys/devices/system/cpu/isolated 2>/dev/null || true)
if [ -n "$isolated" ]; then ok "isolated cores: $isolated (give them to rowhook with CPUAffinity=)"
else warn "no isolated cores: for the lowest latency boot with isolcpus=/nohz_full= on the cores rowhook pins (see tuning/README.md)"
fi

# CPU frequency governor.
govs=$(cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor 2>/dev/null | sort -u | tr '\n' ' ')
if [ -z "$govs" ]; then ok "no cpufreq governor exposed (VM or fixed frequency)"
elif [ "$govs" = "performance " ]; then ok "CPU governor: performance"
else warn "CPU governor: $govs— set 'performance' (cpupower frequency-set -g performance) to avoid wake-up latency"
fi

# irqbalance moves interrupts onto pinned cores.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet irqbalance 2>/dev/null; then
  warn "irqbalance is running: ban rowhook's cores (IRQBALANCE_BANNED_CPULIST) or stop it and run tuning/irq-affinity.sh"
else
  ok "irqbalance not running"
fi

# Network: ephemeral ports and accept queue.
read -r lo hi < /proc/sys/net/ipv4/ip_local_port_range
if [ $((hi - lo)) -ge 30000 ]; then ok "ephemeral ports $lo-$hi"
else warn "ephemeral ports $lo-$hi ($((hi - lo))): widen net.ipv4.ip_local_port_range (tuning/sysctl.conf) if receivers close connections often"
fi
tw=$(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null || echo 0)
if [ "$tw" = 1 ]; then ok "net.ipv4.tcp_tw_reuse = 1"
else warn "net.ipv4.tcp_tw_reuse = $tw: set 1 so TIME_WAIT sockets do not exhaust ports when receivers close connections"
fi
sc=$(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo 0)
if [ "$sc" -ge 1024 ]; then ok "net.core.somaxconn = $sc"
else warn "net.core.somaxconn = $sc: raise to 4096 (tuning/sysctl.conf)"
fi

# Transparent huge pages in "always" mode can stall allocations.
thp=$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || true)
case $thp in
  *"[always]"*) warn "transparent hugepages: always — compaction stalls can add latency spikes; 'madvise' is safer" ;;
  "") ;;
  *) ok "transparent hugepages: ${thp}" ;;
esac

echo "$fails problem(s), $warns warning(s)"
[ "$fails" -eq 0 ]
