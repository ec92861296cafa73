"""The command line (click only): parse the arguments, call a command, render its result, exit
with its status. Loaded only when ``pitr.entry`` does not answer a plain ``wal-push`` /
``wal-fetch`` itself."""
