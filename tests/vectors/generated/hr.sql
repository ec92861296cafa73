-- run on the server that wrote mysql-bin.000002..000007, then mysql-bin.000008 was copied
-- while the server was still running (hence mysql-bin.000008.in-use)
USE shop;
SET SESSION binlog_format = STATEMENT;
CREATE TABLE hr (id INT PRIMARY KEY, t DATETIME(6)) ENGINE=InnoDB;
INSERT INTO hr VALUES (1, NOW(6));
BEGIN; INSERT INTO hr VALUES (2, NOW(6)); INSERT INTO hr VALUES (3, SYSDATE(6)); COMMIT;
SET SESSION binlog_format = ROW;
INSERT INTO hr VALUES (4, NOW(6));
