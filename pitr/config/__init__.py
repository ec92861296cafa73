"""The configuration: ``pitr.toml`` and ``PITR_*`` variables turned into typed settings."""
