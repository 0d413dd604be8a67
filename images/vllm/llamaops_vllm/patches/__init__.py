"""One module per patch; each exposes `apply() -> str | None` (None when applied, else why it skipped)."""
