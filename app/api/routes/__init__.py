"""HTTP routes, one module per resource; each calls the pipeline and nothing else."""
