# Sourced by bench-decode.sh and bench-tail.sh: starts a throwaway MariaDB
# (removed on exit), waits for it, and writes 200,000 rows of a 9-column table in
# 1,000-row transactions. Sets: work, port, sql(), file and pos (where the rows
# start in the binlog).
work=$(mktemp -d /tmp/rowhook-bench-XXXX)
port=$((20000 + RANDOM % 10000))
scripts/mariadb-sandbox "$work/data" "$port" FULL >"$work/mariadbd.log" 2>&1 &
sandbox_pid=$!
trap 'kill $sandbox_pid 2>/dev/null; wait $sandbox_pid 2>/dev/null; rm -rf "$work"' EXIT
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
