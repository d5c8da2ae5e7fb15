"""Defaults of the batched patching engine, in a module that imports nothing (configs read them
at plan time, before torch is loaded)."""

# K: definitions per forward. On CPU a few dozen copies fill the matmuls well without the
# stacked activations falling out of cache; measured on the CartPole DQN (bench/).
DEFAULT_DEFS_PER_FORWARD = 64
