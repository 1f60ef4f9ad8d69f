"""StyleID, the image-style teacher: its config, attention injection and batched engine."""
