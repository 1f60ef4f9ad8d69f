"""The StyleID teacher: model loading, the batched engine, the Ray actor running work units."""
