"""One module per store, all with the same small interface (`base.Store`)."""
