"""What the sync reports about itself to the warehouse (as opposed to the records it syncs there)."""
