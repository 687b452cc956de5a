#!/usr/bin/env bash
# The demo: a throwaway MariaDB with a row binlog on 127.0.0.1:3307 (data in ./demo),
# demo tables, a release build of rowhook following it as a replica, and a few
# changes whose payloads stream to the terminal.
# Stop everything with Ctrl-C; `rm -rf demo` forgets it all.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${DEMO_PORT:-3307}
sql() { mariadb --protocol=tcp -h127.0.0.1 -P"$port" -uroot "$@"; }

mkdir -p demo
# A server left from an earlier demo whose directory was removed (`rm -rf demo`)
# still answers but cannot write: shut it down and start afresh.
if [ ! -d demo/mariadb ] && sql -N -e 'SELECT @@datadir' 2>/dev/null | grep -q 'demo/mariadb'; then
  echo "==> stopping the MariaDB of an earlier demo (its data directory is gone)"
  sql -e 'SHUTDOWN' >/dev/null 2>&1 || true
  for _ in $(seq 1 100); do sql -e 'SELECT 1' >/dev/null 2>&1 || break; sleep 0.1; done
fi
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

echo "==> building rowhook and loadgen (release)"
cargo build --release --quiet -p rowhook -p loadgen

sink_port=${DEMO_SINK_PORT:-18080}
export ROWHOOK_DB_PORT=$port
export ROWHOOK_CALLBACK_HOST=http://127.0.0.1:$sink_port
export ROWHOOK_STATE_DIR=demo/state
echo "==> loadgen sink on $ROWHOOK_CALLBACK_HOST: a webhook receiver printing every body it gets"
./target/release/loadgen sink --listen 127.0.0.1:$sink_port --print &
sink_pid=$!
trap 'kill $sink_pid 2>/dev/null || true' EXIT
sleep 0.3

echo "==> rowhook check --config config/config.yaml   (configuration, server settings, privileges, receivers)"
./target/release/rowhook check --config config/config.yaml
echo "==> rowhook run --config config/config.yaml   (replica of MariaDB -> webhooks; log: demo/rowhook.log)"
./target/release/rowhook run --config config/config.yaml 2>demo/rowhook.log &
run_pid=$!
trap 'kill $run_pid $sink_pid 2>/dev/null || true' EXIT
# Wait until rowhook is registered as a replica, then make some changes.
for _ in $(seq 1 100); do
  sql -N -e "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'" | grep -qv '^0$' && break
  sleep 0.1
done
for i in 1 2 3; do
  id=$((RANDOM * 1000 + i))
  sql -e "INSERT INTO shop.users VALUES ($id, 'User $i', 'user$i@example.com');
          UPDATE shop.users SET email = 'changed$i@example.com' WHERE id = $id;
          INSERT INTO shop.\`order\` VALUES ($id, $id, 12.50 * $i, NOW(3));
          DELETE FROM shop.users WHERE id = $id;"
  sleep 1
done
sleep 1
echo "==> rowhook status; rowhook tasks   (read the running instance's admin API on 127.0.0.1:8080)"
./target/release/rowhook status --admin http://127.0.0.1:8080 || true
./target/release/rowhook tasks --admin http://127.0.0.1:8080 || true
kill $run_pid $sink_pid 2>/dev/null || true

echo
echo "Above: real row changes read from MariaDB's binlog as a replica and POSTed by rowhook to"
echo "the webhook receiver, which printed each body (users one per row; orders as batches)."
echo "MariaDB keeps running on 127.0.0.1:$port (pid $(cat demo/mariadbd.pid 2>/dev/null || echo '?'))."
echo "See the payloads without webhooks:  ROWHOOK_DB_PORT=$port ./target/release/rowhook tail --config config/config.yaml"
