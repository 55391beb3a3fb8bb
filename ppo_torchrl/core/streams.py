"""Independent random streams, one per learner, drawn together in one tensor op.

Many seeds in one program need each seed's randomness (env resets, action samples,
minibatch order) to be its own: seed k must train the same whether it runs alone or beside
1023 others, on any device. One ``torch.Generator`` per seed would cost one kernel launch per
seed per draw; a single shared generator would tie each seed's draws to the others'. So
each stream is SplitMix64 (Steele, Lea & Flood 2014; the seeder of java.util.SplittableRandom
and of NumPy's SeedSequence family): draw ``i`` of stream ``s`` is
``mix(key_s + (i + 1) * GOLDEN)``, a pure function of (stream key, draw index) computed for
all streams at once with int64 tensor arithmetic (wrapping, as two's complement does).
``specs/test_independent_seeds.py`` checks it against the 64-bit reference in Python ints.
"""

from __future__ import annotations

import torch

MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 that holds it."""
    value &= MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


GOLDEN = _signed(0x9E3779B97F4A7C15)
MIX1 = _signed(0xBF58476D1CE4E5B9)
MIX2 = _signed(0x94D049BB133111EB)


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 bit patterns."""
    z = (z ^ _shr(z, 30)) * MIX1
    z = (z ^ _shr(z, 27)) * MIX2
    return z ^ _shr(z, 31)


def mix64_reference(z: int) -> int:
    """The same finaliser on Python ints (unsigned, 64-bit), for the spec."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def bits_at(keys: torch.Tensor, drawn: torch.Tensor, n: int) -> torch.Tensor:
    """Draws ``drawn + 1 .. drawn + n`` of every stream ([S, 1] ``keys``), int64 [S, n]. A pure
    function of tensors: a compiled graph takes ``drawn`` as a 0-d tensor and never
    recompiles for a new position."""
    index = drawn + torch.arange(1, n + 1, dtype=torch.int64, device=keys.device)
    return mix64(keys + index * GOLDEN)


def to_uniform(bits: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform on [0, 1): the top 53 (float64) or 24 (float32) bits of each draw."""
    width = 53 if dtype == torch.float64 else 24
    return _shr(bits, 64 - width).to(dtype) * (2.0**-width)


class Streams:
    """One random stream per seed in ``seeds``; every draw returns [len(seeds), *shape].

    Each call consumes ``prod(shape)`` draws of every stream, in the same order whatever the
    number of streams, so a stream's values depend only on its seed and the call sequence.
    ``state()``/``load()`` round-trip the position for exact resume.
    """

    def __init__(self, seeds: list[int], salt: int = 0, device: torch.device | str | None = None) -> None:
        keys = torch.tensor([_signed(s * 0x100000001B3 + salt) for s in seeds], dtype=torch.int64)
        self.keys = mix64(keys).to(device).view(-1, 1)  # decorrelate neighbouring seeds
        self.device = self.keys.device
        self.drawn = 0

    def bits(self, *shape: int) -> torch.Tensor:
        """Raw 64-bit draws, int64 [S, *shape]."""
        n = 1
        for size in shape:
            n *= size
        out = bits_at(self.keys, torch.tensor(self.drawn, device=self.device), n)
        self.drawn += n
        return out.view(-1, *shape)

    def uniform(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return to_uniform(self.bits(*shape), dtype)

    def permutations(self, n: int) -> torch.Tensor:
        """One random permutation of range(n) per stream, int64 [S, n]."""
        return torch.argsort(self.bits(n), dim=1)

    def state(self) -> int:
        return self.drawn

    def load(self, drawn: int) -> None:
        self.drawn = int(drawn)
