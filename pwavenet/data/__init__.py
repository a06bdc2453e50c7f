"""Data: corpus layouts, preprocessing into a feature cache, the training dataset, sampler and
collate, and the synthetic speech corpus."""
