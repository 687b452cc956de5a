#!/usr/bin/env bash
# The demo: a throwaway MariaDB with a row binlog on 127.0.0.1:3307 (data in ./demo),
# demo tables, a release build of rowhook, and rowhook pointed at it.
# Stop everything with Ctrl-C; `rm -rf demo` forgets it all.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${DEMO_PORT:-3307}
sql() { mariadb --protocol=tcp -h127.0.0.1 -P"$port" -uroot "$@"; }

mkdir -p demo
if ! sql -e 'SELECT 1' >/dev/null 2>&1; then
  echo "==> starting MariaDB on 127.0.0.1:$port (log: demo/mariadbd.log)"
  scripts/mariadb-sandbox demo/mariadb "$port" FULL >demo/mariadbd.log 2>&1 &
  echo $! >demo/mariadbd.pid
  for _ in $(seq 1 600); do sql -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
  sql -e 'SELECT 1' >/dev/null || { tail -20 demo/mariadbd.log; exit 1; }
fi
sql -e "SELECT CONCAT('    ', VERSION(), '  log_bin=', @@log_bin, '  binlog_format=', @@binlog_format, '  row_metadata=', @@binlog_row_metadata) AS server"

echo "==> creating demo tables shop.users and shop.order"
sql <<'SQL'
CREATE DATABASE IF NOT EXISTS shop;
CREATE TABLE IF NOT EXISTS shop.users (id INT PRIMARY KEY, name VARCHAR(100), email VARCHAR(200));
CREATE TABLE IF NOT EXISTS shop.`order` (id BIGINT PRIMARY KEY, user_id INT, total DECIMAL(10,2), created_at DATETIME(3));
SQL

echo "==> building rowhook (release)"
cargo build --release --quiet -p rowhook

export ROWHOOK_DB_PORT=$port
echo "==> rowhook check --config config/config.yaml"
./target/release/rowhook check --config config/config.yaml

echo "==> writing some rows"
sql -e "INSERT INTO shop.users VALUES (FLOOR(RAND()*1e9), 'John Doe', 'john@example.com');
        INSERT INTO shop.\`order\` VALUES (FLOOR(RAND()*1e12), 1, 12.50, NOW(3));"
sql -e "SHOW MASTER STATUS"

echo
echo "MariaDB keeps running for the next steps (pid $(cat demo/mariadbd.pid 2>/dev/null || echo '?'))."
echo "Streaming these changes to a webhook needs the replication core and delivery engine,"
echo "which are not in this build yet; this demo will run them as soon as they land."
