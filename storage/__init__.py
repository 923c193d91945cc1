"""The SQL event log of Synthora runs, and replay from it (work in progress)."""
