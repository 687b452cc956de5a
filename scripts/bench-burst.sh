#!/usr/bin/env bash
# One burst through the whole path until bench/ exists: a throwaway MariaDB, `rowhook
# run` (release, admin server on) and `loadgen sink` on loopback. Commits one
# INSERT ... SELECT of N rows, waits until the sink has N webhooks, and prints the
# rate plus rowhook's own per-stage latency (from /histograms) and RSS.
#   scripts/bench-burst.sh [ROWS] [WORKERS]
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-100000}
workers=${2:-16}
work=$(mktemp -d /tmp/rowhook-burst-XXXX)
port=$((20000 + RANDOM % 10000)); sink=$((port + 1)); admin=$((port + 2))
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
scripts/mariadb-sandbox "$work/data" "$port" FULL >"$work/mariadbd.log" 2>&1 &
pids+=($!)
sql() { mariadb --protocol=tcp -h127.0.0.1 -P"$port" -uroot "$@"; }
for _ in $(seq 1 300); do sql -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
sql -e "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(64))"
cargo build --release -q -p rowhook -p loadgen
./target/release/loadgen sink --listen 127.0.0.1:$sink 2>"$work/sink.log" &
pids+=($!)
cat >"$work/config.yaml" <<YAML
database: {host: 127.0.0.1, port: $port, user: root, password: '', server_id: 4711, tls: disabled}
source: {start: latest, heartbeat: 1s}
server: {enabled: true, port: $admin}
state: {dir: '$work/state'}
dispatcher: {worker_count: $workers, max_inflight: 10000}
tasks:
  - {task_id: t, table_name: shop.t, events: [insert, update, delete], callback_url: 'http://127.0.0.1:$sink/t'}
YAML
./target/release/rowhook run --config "$work/config.yaml" 2>"$work/rowhook.log" &
pids+=($!)
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$admin/health" | grep -q '"monitor_running": true' && break; sleep 0.1
done
events() { curl -s "http://127.0.0.1:$sink/report" | sed -E 's/.*"events": *([0-9]+).*/\1/'; }
start=$(date +%s.%N)
sql -e "INSERT INTO shop.t SELECT seq, REPEAT('x', 50) FROM shop.seq_1_to_$rows"
committed=$(date +%s.%N)
while [ "$(events)" -lt "$rows" ]; do sleep 0.02; done
done_at=$(date +%s.%N)
python3 - "$start" "$committed" "$done_at" "$rows" "$workers" "$admin" <<'PY'
import json, sys, urllib.request
start, committed, done, rows, workers = map(float, sys.argv[1:6])
base = "http://127.0.0.1:%s" % sys.argv[6]
h = json.load(urllib.request.urlopen(base + "/histograms"))
m = json.load(urllib.request.urlopen(base + "/metrics.json"))
print(f"rows            {int(rows)} in one INSERT ... SELECT (worker_count {int(workers)}, one POST per row)")
print(f"commit took     {committed - start:.2f} s")
print(f"all acked after {done - start:.2f} s from the statement's start")
print(f"webhooks/s      {rows / (done - start):,.0f}")
print(f"rss             {m['system']['memory_rss_bytes'] / 1e6:.1f} MB")
print("stage           count       p50 µs     p99 µs   p99.9 µs     max µs")
for name, s in h["stages"].items():
    print(f"{name:<12} {s['count']:>8} {s['p50_us']:>12.1f} {s['p99_us']:>10.1f} {s['p999_us']:>10.1f} {s['max_us']:>10.1f}")
PY
