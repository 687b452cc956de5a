#!/usr/bin/env bash
# Records a binlog of 200,000 rows of a 9-column table in a throwaway MariaDB
# (1,000-row transactions), then runs `bench decode` over it on one core.
#   scripts/bench-decode.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/sandbox-200k-rows.sh
sql -e "FLUSH BINARY LOGS"
cargo build --release -q -p bench
./target/release/bench decode --file "$work/data/$file" --seconds "${1:-5}"
