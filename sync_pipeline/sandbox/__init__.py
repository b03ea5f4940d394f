"""Local stand-ins for external services; never imported by production code."""
