"""The sync logic with no Dagster and no I/O: records, versions, hashing, conflict resolution."""
