"""Models layer (torch): codecs behind one interface, fills, metrics, registry and zoo."""
