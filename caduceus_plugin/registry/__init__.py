"""Components by name: the ``genomic_models`` hook specs, the process-wide registry (our built-ins plus third-party
plugins), the shipped model specs and the built-in weights."""
