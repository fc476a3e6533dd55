"""kipoi integration: the model class of an exported directory and the exporter (needs the ``[kipoi]`` extra)."""
