"""Env adapters: gymnasium envs as batched TorchRL envs (`factory`), and torch-native copies
of envs that run on any device (`cartpole`, `acrobot`). Nothing here knows PPO."""
