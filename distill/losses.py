"""Distillation losses as pure functions, computed in float32, safe when every position is masked."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the temperature-softened distributions, times T² (Hinton et al., 2015).

    Args: student_logits, teacher_logits: [batch, classes]. Returns a scalar (mean over the batch).
    """
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return F.kl_div(s, t, reduction="batchmean", log_target=True) * temperature**2


def hard_ce(student_logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy with the gold labels (optionally smoothed). student_logits [batch, classes], labels [batch]
    -> scalar."""
    return F.cross_entropy(student_logits.float(), labels, label_smoothing=label_smoothing)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float,
    soft_weight: float,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """soft_weight * soft_kl + (1 - soft_weight) * hard_ce; returns (total, soft, hard).

    Rows without a gold label (labels == -100, e.g. augmented texts) only get the soft loss.
    """
    soft = soft_kl(student_logits, teacher_logits, temperature)
    hard = torch.zeros((), device=student_logits.device)
    if labels is not None and soft_weight < 1.0:
        labelled = labels != -100
        if labelled.any():
            hard = hard_ce(student_logits[labelled], labels[labelled], label_smoothing)
    return soft_weight * soft + (1.0 - soft_weight) * hard, soft, hard


def hidden_mse(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    projection: torch.nn.Module | None = None,
) -> torch.Tensor:
    """Mean squared error between hidden states at real (unmasked) token positions.

    Args: student_hidden [batch, seq, d_s], teacher_hidden [batch, seq, d_t], attention_mask [batch, seq];
    projection maps d_s -> d_t where the widths differ. Returns a scalar; 0 when no position is real.
    """
    projected = projection(student_hidden) if projection is not None else student_hidden
    mask = attention_mask.unsqueeze(-1).float()
    squared = (projected.float() - teacher_hidden.float()) ** 2 * mask
    count = mask.sum() * teacher_hidden.shape[-1]
    return squared.sum() / count.clamp(min=1.0)


def attention_mse(student_attention: torch.Tensor, teacher_attention: torch.Tensor,
                  attention_mask: torch.Tensor) -> torch.Tensor:
    """MSE between attention maps [batch, heads, seq, seq] (same head count) over real query/key pairs."""
    if student_attention.shape != teacher_attention.shape:
        raise ValueError(
            f"attention shapes differ: {tuple(student_attention.shape)} vs {tuple(teacher_attention.shape)}"
        )
    pair = (attention_mask[:, None, :, None] * attention_mask[:, None, None, :]).float()
    squared = (student_attention.float() - teacher_attention.float()) ** 2 * pair
    count = pair.sum() * student_attention.shape[1]
    return squared.sum() / count.clamp(min=1.0)
