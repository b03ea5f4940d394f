"""The canonical model: entity shapes (`fields`), the registry built from the sync configuration
(`entities`), canonical values and pandera contracts.

Nothing is imported here: the configuration imports `model.fields`, and the registry imports the
configuration, so this package must not load the registry on its own.
"""
