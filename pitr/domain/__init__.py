"""The values every layer speaks: recovery targets, GTIDs, time."""
