#!/usr/bin/env bash
# Moves hardware interrupts (NICs, disks) off the cores rowhook is pinned to, so a
# packet storm does not preempt the source core or a delivery shard.
#
#   sudo tuning/irq-affinity.sh 2-3          # keep IRQs away from CPUs 2 and 3
#   sudo tuning/irq-affinity.sh 2-3 --dry-run
#
# Stop irqbalance first (it would move them back): systemctl disable --now irqbalance,
# or set IRQBALANCE_BANNED_CPULIST=2-3 in /etc/default/irqbalance and keep it.
set -euo pipefail

usage() { echo "usage: $0 CPULIST [--dry-run]   (CPULIST: the cores rowhook uses, e.g. 2-3 or 2,4)" >&2; exit 2; }
[ $# -ge 1 ] || usage
reserved=$1
dry=${2:-}
[ -z "$dry" ] || [ "$dry" = --dry-run ] || usage

ncpu=$(nproc --all)
# Expand a CPU list ("0-2,5") into one number per line.
expand() {
  local part
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then seq "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
    elif [[ $part =~ ^[0-9]+$ ]]; then echo "$part"
    else echo "bad CPU list: $1" >&2; exit 2
    fi
  done
}
declare -A keep_off=()
reserved_cpus=$(expand "$reserved") || exit 2
for c in $reserved_cpus; do
  [ "$c" -lt "$ncpu" ] || { echo "CPU $c does not exist (this host has $ncpu)" >&2; exit 2; }
  keep_off[$c]=1
done
allowed=()
for ((c = 0; c < ncpu; c++)); do [ -n "${keep_off[$c]:-}" ] || allowed+=("$c"); done
[ ${#allowed[@]} -gt 0 ] || { echo "no CPU left for interrupts; reserve fewer cores" >&2; exit 2; }
list=$(IFS=,; echo "${allowed[*]}")

if [ -z "$dry" ] && [ "$(id -u)" != 0 ]; then echo "run as root (or with --dry-run)" >&2; exit 1; fi
if systemctl is-active --quiet irqbalance 2>/dev/null; then
  echo "warn: irqbalance is running and will move interrupts back; see the comment at the top" >&2
fi

moved=0 skipped=0
for dir in /proc/irq/[0-9]*; do
  irq=${dir##*/}
  [ -w "$dir/smp_affinity_list" ] || [ -n "$dry" ] || { skipped=$((skipped + 1)); continue; }
  if [ -n "$dry" ]; then
    echo "irq $irq: $(cat "$dir/smp_affinity_list" 2>/dev/null || echo '?') -> $list"
  elif echo "$list" >"$dir/smp_affinity_list" 2>/dev/null; then
    moved=$((moved + 1))
  else
    # Some interrupts (per-CPU timers, managed NVMe queues) cannot be moved.
    skipped=$((skipped + 1))
  fi
done
# Default for interrupts registered later.
if [ -z "$dry" ] && [ -w /proc/irq/default_smp_affinity ]; then
  mask=0
  for c in "${allowed[@]}"; do mask=$((mask | (1 << c))); done
  printf '%x\n' "$mask" >/proc/irq/default_smp_affinity
fi
[ -n "$dry" ] || echo "interrupts on CPUs $list: $moved moved, $skipped not movable"
