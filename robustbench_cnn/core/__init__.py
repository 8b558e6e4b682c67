"""Layer 1, the foundation: types, the registry, errors, devices, model utilities and geometry."""
