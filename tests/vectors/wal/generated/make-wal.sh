#!/bin/bash
# Generate the PostgreSQL 15 WAL vectors in this directory (or, with BIN=, those of another
# major version: ../generated-18) with a throwaway cluster.
# Run as root on a machine with the PostgreSQL 15 server packages; touches no other server.
# The archived files end up in $BASE/archive (see README.md for which ones were kept).
set -euo pipefail
BIN=${BIN:-/usr/lib/postgresql/15/bin}  # another major: BIN=/var/cache/pitr-test/pg/18/.../bin
BASE=$(mktemp -d /tmp/pitr-walgen-XXXXXX)
chown postgres: "$BASE"; chmod 755 "$BASE"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "base $BASE port $PORT"
HERE=$(cd "$(dirname "$0")" && pwd)
as_pg() { runuser -u postgres -- "$@"; }
as_pg mkdir "$BASE/archive" "$BASE/sock"
as_pg $BIN/initdb -D "$BASE/data" -U postgres -A trust --no-sync >/dev/null
cat >> "$BASE/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$BASE/sock'
wal_level = replica
max_prepared_transactions = 5
archive_mode = on
archive_command = 'cp %p $BASE/archive/%f'
wal_compression = pglz
autovacuum = off
fsync = off
CONF
as_pg $BIN/pg_ctl -D "$BASE/data" -l "$BASE/pg.log" -w start >/dev/null
PSQL=(runuser -u postgres -- $BIN/psql -X -q -v ON_ERROR_STOP=1 -h "$BASE/sock" -p "$PORT" -d postgres)
as_pg $BIN/pg_basebackup -h "$BASE/sock" -p "$PORT" -D "$BASE/base" -X fetch -c fast
"${PSQL[@]}" -c "CREATE TABLE t4 (id int); CREATE TABLE t5 (id int)"
seg() { "${PSQL[@]}" -Atc "SELECT pg_walfile_name(pg_current_wal_insert_lsn())"; }
"${PSQL[@]}" -c "SELECT pg_switch_wal()" >/dev/null
S1=$(seg); echo "mixed segment $S1"
"${PSQL[@]}" < "$HERE/mixed.sql"  # root reads it: postgres may not see this tree
"${PSQL[@]}" -c "SELECT pg_switch_wal()" >/dev/null
# a segment that begins with the tail of a record (1 MB logical messages across the boundary)
S2=$(seg)
while [ "$(seg)" = "$S2" ]; do
  "${PSQL[@]}" -c "SELECT pg_logical_emit_message(false, 'big', repeat('x', 1000000))" >/dev/null
done
S3=$(seg); echo "contrecord segment $S3"
"${PSQL[@]}" -c "CREATE TABLE t6 (id int); INSERT INTO t6 VALUES (1)"
"${PSQL[@]}" -c "BEGIN; INSERT INTO t6 VALUES (2); ROLLBACK"
"${PSQL[@]}" -c "SELECT pg_create_restore_point('after the big messages')" >/dev/null
"${PSQL[@]}" -c "INSERT INTO t6 VALUES (3)"
"${PSQL[@]}" -c "SELECT pg_switch_wal()" >/dev/null
sleep 2
as_pg $BIN/pg_ctl -D "$BASE/data" -w stop >/dev/null
# point-in-time recovery to the restore point in the mixed segment: timeline 2
cp "$BASE/data/postgresql.conf" "$BASE/base/postgresql.conf"
cat >> "$BASE/base/postgresql.conf" <<CONF
restore_command = 'cp $BASE/archive/%f %p'
recovery_target_name = 'before-drop'
recovery_target_action = 'promote'
CONF
touch "$BASE/base/recovery.signal"; chown postgres: "$BASE/base/recovery.signal"
as_pg $BIN/pg_ctl -D "$BASE/base" -l "$BASE/pg2.log" -w start >/dev/null
for i in $(seq 30); do
  [ "$("${PSQL[@]}" -Atc 'SELECT pg_is_in_recovery()')" = f ] && break; sleep 1
done
"${PSQL[@]}" -c "INSERT INTO t4 VALUES (42)"
"${PSQL[@]}" -c "SELECT pg_create_restore_point('on timeline 2')" >/dev/null
"${PSQL[@]}" -c "SELECT pg_switch_wal()" >/dev/null
sleep 2
as_pg $BIN/pg_ctl -D "$BASE/base" -w stop >/dev/null
echo "kept: $S1 (mixed), $S3 (begins with a continuation), 00000002${S1:8} and 00000002.history"
ls -la "$BASE/archive"
