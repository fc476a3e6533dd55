"""``caduceus bench``: every model trained on the real tasks side by side, plus zero-shot VEP and compute tables."""
