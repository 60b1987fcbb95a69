"""Sharpness-aware minimisation (Foret et al., 2021, "Sharpness-Aware Minimization for Efficiently Improving
Generalization"): each step takes its gradient not at the weights w but at w + e, where e moves the weights a
distance rho up their own gradient:

    e = rho * g(w) / ||g(w)||,   update with g(w + e)

so training seeks weights whose whole neighbourhood has a low loss (flat minima), which the paper and later
work on language models (Bahri et al., 2022) report generalises better. The norm is over all trainable
weights together. Adaptive SAM (Kwon et al., 2021, "ASAM") measures the neighbourhood relative to each
weight's size, so that rescaling a layer does not change its sharpness: with T = |w| + 0.01 elementwise,

    e = rho * T^2 g / ||T g||

(the move divided by T has length rho; its rho is typically about ten times SAM's).

A step costs two forward and backward passes (1.8-1.9x a plain one for full fine-tuning of all-MiniLM-L6-v2
on SST-2, 2 CPU cores); dropout draws new masks for the second. It assumes the gradients start each step at
zero (no gradient accumulation, which the stages do not use). Evaluation and prediction are unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

ADAPTIVE_ETA = 0.01  # ASAM's floor on a weight's scale, so that zero weights still move


@contextlib.contextmanager
def ascended(model: torch.nn.Module, rho: float, adaptive: bool = False) -> Iterator[None]:
    """Inside: the trainable weights moved rho (L2, all together; relative to their size when `adaptive`) along
    their current gradient, gradients cleared. On exit: the weights put back exactly (copies, not a subtraction),
    the gradients taken inside kept."""
    params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
    if not params:
        raise RuntimeError("sharpness-aware step without gradients: run the first backward pass before it")
    with torch.no_grad():
        scales = [p.detach().float().abs() + ADAPTIVE_ETA if adaptive else 1.0 for p in params]
        directions = [p.grad.float() * t for p, t in zip(params, scales, strict=True)]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(d) for d in directions]))
        factor = rho / (norm + 1e-12)
        originals = [p.detach().clone() for p in params]
        for param, direction, t in zip(params, directions, scales, strict=True):
            param.add_((direction * factor * t).to(param.dtype))
            param.grad = None
    try:
        yield
    finally:
        with torch.no_grad():
            for param, original in zip(params, originals, strict=True):
                param.copy_(original)
