"""Integration with host frameworks: gReLU (+ Lightning, Hydra) and kipoi."""
