"""LSAST, the learned-style teacher: prompt generators, grouped cross-attention, the engine."""
