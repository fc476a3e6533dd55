"""Numba CPU kernels of the selective scan: shared building blocks (``simd``), training (``scan``), streaming
inference (``stream``)."""
