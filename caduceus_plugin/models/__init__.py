"""Model code: shared blocks (``mamba``, ``rcps``, ``heads``), the Caduceus and HyenaDNA families, and peers."""
