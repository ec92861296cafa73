"""The values every layer speaks: recovery targets, positions in the logs (LSNs, WAL names,
binlog keys), GTIDs, time, and ``pitr check``'s report."""
