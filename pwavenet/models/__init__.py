"""The networks and what they compute: causal convolutions and gated blocks, the output
distributions, the WaveNet teacher, the IAF student and their inference exports. Imports nothing
from the training, data or evaluation layers."""
