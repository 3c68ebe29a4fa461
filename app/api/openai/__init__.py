"""The OpenAI-compatible surface: its request and response shapes and its error envelope, over
the same pipeline as `/generate`."""
