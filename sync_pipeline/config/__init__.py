"""The declarative sync configuration: entities, and how each store holds them (a YAML file named by
`SYNC_PIPELINE_CONFIG`, the sandbox's schema by default)."""

from sync_pipeline.config.loader import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    ConfigError,
    active_config,
    config_path,
    load_config,
    parse_config,
)
from sync_pipeline.config.models import STORE_KEYS, SyncConfig, TableMapping, TwentyObjectMapping

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "STORE_KEYS",
    "ConfigError",
    "SyncConfig",
    "TableMapping",
    "TwentyObjectMapping",
    "active_config",
    "config_path",
    "load_config",
    "parse_config",
]
