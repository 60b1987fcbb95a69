"""Process-wide defaults: offline hub access and caches kept inside the project folder."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def cache_root() -> Path:
    """Folder for project-wide caches (converted models, matplotlib); LORADISTILL_CACHE overrides it."""
    return Path(os.environ.get("LORADISTILL_CACHE", PROJECT_ROOT / ".cache"))


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "1").strip().lower() not in ("0", "false", "no", "")


def configure_environment() -> None:
    """Set offline and cache defaults before transformers/datasets are imported; user values win."""
    root = cache_root()
    defaults = {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
        "HF_HOME": str(root / "huggingface"),
        "MPLCONFIGDIR": str(root / "matplotlib"),
        "TORCHINDUCTOR_CACHE_DIR": str(root / "torchinductor"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def native_bf16() -> bool:
    """Whether this CPU runs bfloat16 matrix products natively (AVX512-BF16 or AMX), so autocast is faster."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def set_threads(num_threads: int | None) -> None:
    """torch's CPU threads: num_threads, or every core."""
    import torch

    torch.set_num_threads(num_threads or os.cpu_count() or 1)
