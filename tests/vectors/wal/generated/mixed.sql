CHECKPOINT;
CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t VALUES (1, 'a');
BEGIN; INSERT INTO t VALUES (2, 'b'); ROLLBACK;
BEGIN; INSERT INTO t VALUES (3, 'c'); SAVEPOINT s1; INSERT INTO t VALUES (4, 'd'); RELEASE s1;
  SAVEPOINT s2; INSERT INTO t VALUES (5, 'e'); ROLLBACK TO s2; COMMIT;
BEGIN; INSERT INTO t VALUES (6, 'f'); PREPARE TRANSACTION 'p1';
COMMIT PREPARED 'p1';
BEGIN; INSERT INTO t VALUES (7, 'g'); PREPARE TRANSACTION 'p2';
ROLLBACK PREPARED 'p2';
CREATE TABLE t3 (id int);
BEGIN; DROP TABLE t3; INSERT INTO t VALUES (8, 'h'); PREPARE TRANSACTION 'p3';
COMMIT PREPARED 'p3';
SELECT pg_create_restore_point('before-drop');
DROP TABLE t;
SELECT pg_replication_origin_create('origin1');
SELECT pg_replication_origin_session_setup('origin1');
BEGIN; SELECT pg_replication_origin_xact_setup('0/ABCDEF', '2020-01-02 03:04:05+00');
  INSERT INTO t4 VALUES (1); COMMIT;
SELECT pg_replication_origin_session_reset();
-- 3000 subtransactions: a commit record of about 12 KB, spanning pages
DO $$ BEGIN FOR i IN 1..3000 LOOP
  BEGIN INSERT INTO t5 VALUES (i); EXCEPTION WHEN others THEN NULL; END;
END LOOP; END $$;
-- an abort with subtransactions
\set ON_ERROR_STOP 0
DO $$ BEGIN FOR i IN 1..10 LOOP
  BEGIN INSERT INTO t5 VALUES (i); EXCEPTION WHEN others THEN NULL; END;
END LOOP; RAISE EXCEPTION 'abort it'; END $$;
\set ON_ERROR_STOP 1
SELECT pg_create_restore_point('a restore point name of the maximum length, 63 bytes long......');
INSERT INTO t4 VALUES (2);
