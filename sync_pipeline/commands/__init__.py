"""What the `sync-pipeline` commands do beyond parsing their options: they load the code location."""
