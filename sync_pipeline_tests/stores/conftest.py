"""Until the root conftest registers it, the BigQuery plugin is registered here."""

pytest_plugins = ["sync_pipeline_tests.fixtures.bigquery"]
