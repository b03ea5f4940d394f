"""The BigQuery fixtures, until the root conftest registers `sync_pipeline_tests.fixtures.bigquery`.

Imported rather than listed in `pytest_plugins`: pytest refuses `pytest_plugins` in a conftest below the
rootdir when the whole suite is collected. Delete this file once the root conftest has the plugin.
"""

from sync_pipeline_tests.fixtures.bigquery import bigquery_emulator, bigquery_store  # noqa: F401
