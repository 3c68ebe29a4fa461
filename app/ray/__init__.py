"""The service on Ray Serve: N replicas of the same app, one switch that reaches every one.
Needs the `ray` extra; nothing outside this package and `bankllm serve --ray` imports it."""
