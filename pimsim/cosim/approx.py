"""The ASIC's arithmetic for nonlinear functions, as PIM-GPT describes it, in float32 (torch).

Step counts come from the ``asic`` section of the hardware config, the same numbers the latency model
(:mod:`pimsim.asic.costs`) charges for, so the accuracy cost and the time cost of a choice go together:

- exp: range reduction x = k ln2 + r (|r| <= ln2 / 2), exp(r) by a Taylor polynomial of
  ``exp_taylor_terms`` terms (Horner's rule), then 2^k by exponent arithmetic;
- 1/x: the bit-pattern seed 0x7EF311C3 - bits(x), then ``reciprocal_newton_iterations`` steps
  y <- y (2 - x y);
- 1/sqrt(x): the "fast inverse square root" seed 0x5F3759DF - bits(x) / 2, then
  ``rsqrt_newton_iterations`` steps y <- y (1.5 - 0.5 x y^2);
- GELU: x / 2 (1 + erf(x / sqrt 2)) with erf by its Taylor series of ``gelu_taylor_terms`` terms,
  saturated to +-1 where the first term left out would exceed 1e-3 (assumed: the paper names the
  method, not the order or the range);
- tanh, sigmoid, SiLU through exp and 1/x; softmax and LayerNorm from these pieces.
"""

from __future__ import annotations

import math

import torch

from pimsim.config.models import AsicConfig

LN2 = math.log(2.0)


def _bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32)


def _float(bits: torch.Tensor) -> torch.Tensor:
    return bits.contiguous().view(torch.float32)


class AsicMath:
    def __init__(self, asic: AsicConfig):
        self.exp_terms = asic.exp_taylor_terms
        self.gelu_terms = asic.gelu_taylor_terms
        self.recip_steps = asic.reciprocal_newton_iterations
        self.rsqrt_steps = asic.rsqrt_newton_iterations
        self.erf_limit = self._erf_limit(self.gelu_terms)

    @staticmethod
    def _erf_limit(terms: int) -> float:
        """Largest z at which the erf series' first omitted term stays below 1e-3."""
        def omitted(z):
            n = terms
            return 2 / math.sqrt(math.pi) * z ** (2 * n + 1) / (math.factorial(n) * (2 * n + 1))
        z = 0.0
        while omitted(z + 0.01) < 1e-3 and z < 6:
            z += 0.01
        return z

    def exp(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().clamp(-126 * LN2, 126 * LN2)
        k = torch.round(x / LN2)
        r = x - k * LN2
        p = torch.ones_like(r)
        for i in range(self.exp_terms, 0, -1):
            p = 1 + r * p / i
        return torch.ldexp(p, k.to(torch.int32))

    def reciprocal(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        a = x.abs()
        y = _float(0x7EF311C3 - _bits(a))
        for _ in range(self.recip_steps):
            y = y * (2 - a * y)
        return torch.where(x < 0, -y, y)

    def rsqrt(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        y = _float(0x5F3759DF - (_bits(x) >> 1))
        for _ in range(self.rsqrt_steps):
            y = y * (1.5 - 0.5 * x * y * y)
        return y

    def erf(self, z: torch.Tensor) -> torch.Tensor:
        zc = z.clamp(-self.erf_limit, self.erf_limit)
        z2 = zc * zc
        term, total = zc.clone(), zc.clone()
        for n in range(1, self.gelu_terms):
            term = term * (-z2) / n
            total = total + term / (2 * n + 1)
        series = total * (2 / math.sqrt(math.pi))
        return torch.where(z.abs() > self.erf_limit, torch.sign(z), series)

    def gelu(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return 0.5 * x * (1 + self.erf(x / math.sqrt(2.0)))

    def sigmoid(self, x: torch.Tensor) -> torch.Tensor:
        return self.reciprocal(1 + self.exp(-x.float()))

    def silu(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.sigmoid(x)

    def tanh(self, x: torch.Tensor) -> torch.Tensor:
        return 1 - 2 * self.reciprocal(self.exp(2 * x.float()) + 1)

    def softmax(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        x = x.float()
        e = self.exp(x - x.amax(dim=dim, keepdim=True))
        return e * self.reciprocal(e.sum(dim=dim, keepdim=True))

    def layer_norm(self, x: torch.Tensor, shape, weight, bias, eps: float):
        """What aten.native_layer_norm returns: (output, mean, 1/std)."""
        x = x.float()
        dims = tuple(range(x.dim() - len(shape), x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
        rstd = self.rsqrt(var + eps)
        y = (x - mean) * rstd
        if weight is not None:
            y = y * weight
        if bias is not None:
            y = y + bias
        return y, mean, rstd
