"""OpenTelemetry for Synthora runs: spans and metrics from the event bus (work in progress)."""
