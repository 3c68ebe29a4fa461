"""The backends: the Adapter protocol (`protocol`), each backend and its options, and the
`BACKENDS` dict with the one function that loads an adapter (`backends`)."""
