"""gReLU integration: our components as ``grelu.model.models`` classes, the import hook, and the Hydra train app."""
