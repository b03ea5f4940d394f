"""sync_pipeline: keeps CRM records consistent across Twenty CRM, Supabase, a local Postgres DB and BigQuery."""
