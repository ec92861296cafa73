"""One module per command: no click and no printing; each returns what the command found or
did. Nothing is imported here: ``pitr.commands.wal`` is on ``archive_command``'s hot path."""
