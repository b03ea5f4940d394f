"""Dagster: resources, the asset factory, checks, sensors, schedules and jobs."""
