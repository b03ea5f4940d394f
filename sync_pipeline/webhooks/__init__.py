"""The HTTP receiver for Twenty webhooks: verifies, derives an event key, hands events to a sink."""
