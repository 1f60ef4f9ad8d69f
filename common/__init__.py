"""Shared building blocks: configs, storage over fsspec, image I/O, planning and manifests."""
