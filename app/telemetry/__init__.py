"""What the service measures: Prometheus metrics and the JSONL benchmark log."""
