#!/usr/bin/env bash
# Records a binlog of 200,000 rows of a 9-column table in a throwaway MariaDB
# (1,000-row transactions), then runs `bench decode` over it on one core.
#   scripts/bench-decode.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/rowhook-bench-XXXX)
port=$((20000 + RANDOM % 10000))
scripts/mariadb-sandbox "$work/data" "$port" FULL >"$work/mariadbd.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
sql() { mariadb --protocol=tcp -h127.0.0.1 -P"$port" -uroot "$@"; }
for _ in $(seq 1 300); do sql -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
sql -e "CREATE DATABASE b; CREATE TABLE b.t (
  id BIGINT PRIMARY KEY, user_id INT, status VARCHAR(16), amount DECIMAL(12,2), qty SMALLINT,
  note VARCHAR(64), created_at DATETIME(3), updated_at TIMESTAMP NULL, flag TINYINT)"
for batch in $(seq 0 199); do
  sql -D b -e "INSERT INTO b.t SELECT $batch*1000+seq, seq % 5000, ELT(1 + seq % 3, 'new', 'paid', 'shipped'),
          seq * 1.25, seq % 100, CONCAT('note number ', seq), NOW(3), NOW(), seq % 2
          FROM seq_1_to_1000"
done
sql -e "FLUSH BINARY LOGS"
cargo build --release -q -p bench
./target/release/bench decode --file "$work/data/binlog.000001" --seconds "${1:-5}"
