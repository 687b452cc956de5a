#!/usr/bin/env bash
# Live `rowhook tail` throughput (issue: tail speed): 200,000 rows of a 9-column
# table in 1,000-row transactions in a throwaway MariaDB, then, RUNS times each,
#   - `rowhook tail --config` into a reader that only counts lines (exec to the
#     200,000th line, rowhook's CPU from /proc), and
#   - `mariadb-binlog --read-from-remote-server --raw`: what a client that only
#     reads the dump's packets gets from the same server.
#   scripts/bench-tail.sh [RUNS]
# ROWHOOK=path/to/rowhook measures another build (e.g. an older commit's) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
source scripts/sandbox-200k-rows.sh
if [ -z "${ROWHOOK:-}" ]; then
  cargo build --release -q -p rowhook
  ROWHOOK=target/release/rowhook
fi
export ROWHOOK
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
    p = subprocess.Popen([os.environ["ROWHOOK"], "tail", "--config", config],
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
