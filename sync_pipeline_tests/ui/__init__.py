"""The Dagster UI in a real headless browser, against a real `dagster dev`."""
