"""The sync logic with no Dagster and no I/O: records, versions, hashing, conflict resolution and the rules
around it (echoes, own bases, overwritten edits)."""
