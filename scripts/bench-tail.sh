#!/usr/bin/env bash
# Live `rowhook tail` throughput (issue: tail speed): 200,000 rows of a 9-column
# table in 1,000-row transactions in a throwaway MariaDB, then, RUNS times each,
#   - `rowhook tail --config` into a reader that only counts lines (exec to the
#     200,000th line, rowhook's CPU from /proc), and
#   - `mariadb-binlog --read-from-remote-server --raw`: what a client that only
#     reads the dump's packets gets from the same server.
#   scripts/bench-tail.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
work=$(mktemp -d /tmp/rowhook-tail-XXXX)
port=$((20000 + RANDOM % 10000))
scripts/mariadb-sandbox "$work/data" "$port" FULL >"$work/mariadbd.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
sql() { mariadb --protocol=tcp -h127.0.0.1 -P"$port" -uroot "$@"; }
for _ in $(seq 1 300); do sql -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
sql -e "CREATE DATABASE b; CREATE TABLE b.t (
  id BIGINT PRIMARY KEY, user_id INT, status VARCHAR(16), amount DECIMAL(12,2), qty SMALLINT,
  note VARCHAR(64), created_at DATETIME(3), updated_at TIMESTAMP NULL, flag TINYINT)"
read -r file pos _ < <(sql -N -e 'SHOW MASTER STATUS')
for batch in $(seq 0 199); do
  sql -D b -e "INSERT INTO b.t SELECT $batch*1000+seq, seq % 5000, ELT(1 + seq % 3, 'new', 'paid', 'shipped'),
          seq * 1.25, seq % 100, CONCAT('note number ', seq), NOW(3), NOW(), seq % 2
          FROM seq_1_to_1000"
done
cargo build --release -q -p rowhook
cat >"$work/tail.yaml" <<YAML
database: {host: 127.0.0.1, port: $port, user: root, password: '', server_id: 4646, tls: disabled}
source: {start: {file: $file, pos: $pos}, heartbeat: 1s}
log: {level: warn}
tasks:
  - {task_id: t, table_name: b.t, events: [insert], callback_url: 'http://127.0.0.1:9/x'}
YAML
python3 - "$runs" "$work/tail.yaml" <<'PY'
import os, subprocess, sys, time
runs, config, n = int(sys.argv[1]), sys.argv[2], 200_000
tick = os.sysconf("SC_CLK_TCK")
for _ in range(runs):
    t0 = time.time()
    p = subprocess.Popen(["target/release/rowhook", "tail", "--config", config],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    fd, seen, first = p.stdout.fileno(), 0, None
    while seen < n:
        b = os.read(fd, 1 << 20)
        if not b:
            break
        first = first or time.time()
        seen += b.count(b"\n")
    end = time.time()
    stat = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / tick
    p.kill(); p.wait()
    print(f"rowhook tail: {seen} rows in {end - t0:.3f} s = {seen / (end - t0):,.0f} rows/s "
          f"(first line after {first - t0:.3f} s; rowhook CPU {cpu:.2f} s)")
    time.sleep(0.5)
PY
mkdir -p "$work/raw"
for _ in $(seq 1 "$runs"); do
  start=$(date +%s.%N)
  mariadb-binlog --read-from-remote-server -h127.0.0.1 -P"$port" -uroot --raw \
    --result-file="$work/raw/" --start-position="$pos" "$file"
  end=$(date +%s.%N)
  python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'mariadb-binlog raw: 200000 rows in {s:.3f} s = {200000/s:,.0f} rows/s')" "$start" "$end"
done
