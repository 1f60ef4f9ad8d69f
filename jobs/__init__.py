"""Entry points (`python -m jobs.X`): small drivers; the work lives in the packages."""
