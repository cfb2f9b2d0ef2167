"""Model FLOPs utilisation: the training FLOPs a model's shape implies, and the GPUs' dense bf16 peaks.

Standard library and numpy only at import time: the GPU check imports this on machines with few packages.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The architecture of distilbert-base-uncased (DistilBertConfig() defaults), built by the product's own
# offline-preset code with random weights: no Hub download, same shapes and FLOPs.
DISTILBERT_BASE = {"layers": 6, "dim": 768, "heads": 12, "hidden_dim": 3072, "seed": 0}

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, with the vendor document each is read from (the
# data sheets print the sparse figure, twice these). Matched in order against torch.cuda.get_device_name(),
# so the more specific names come first.
PEAK_BF16_TFLOPS = [
    ("H100 PCIe", 756.0, "NVIDIA H100 Tensor Core GPU datasheet (H100 PCIe)"),
    ("H100 NVL", 835.0, "NVIDIA H100 Tensor Core GPU datasheet (H100 NVL)"),
    ("H200 NVL", 835.0, "NVIDIA H200 Tensor Core GPU datasheet (H200 NVL)"),
    ("GH200", 989.0, "NVIDIA GH200 Grace Hopper Superchip datasheet"),
    ("H100", 989.0, "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM)"),  # "NVIDIA H100 80GB HBM3"
    ("H200", 989.0, "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM)"),
    ("B200", 2250.0, "NVIDIA HGX B200 datasheet (per GPU)"),
    ("A100", 312.0, "NVIDIA A100 Tensor Core GPU datasheet"),
    ("L40S", 362.0, "NVIDIA L40S datasheet"),
    ("A10G", 70.0, "no vendor datasheet (NVIDIA publishes none for the A10G): a commonly quoted figure, check it"),
    ("L4", 121.0, "NVIDIA L4 Tensor Core GPU datasheet"),
]


def peak_bf16(gpu_name: str) -> tuple[float, str] | None:
    """(dense bf16 peak in TFLOP/s, its source) for a device name, or None for a GPU missing from the table."""
    for key, peak, source in PEAK_BF16_TFLOPS:
        if key.lower() in gpu_name.lower():
            return peak, source
    return None


FLOPS_FORMULA = (
    "per row of n tokens: 6·N·n + 12·L·d·n² + 6·H, N = the encoder's non-embedding parameters (forward 2·N, "
    "backward 4·N per token), 12·L·d·n² = attention's QKᵀ and AV (2·n²·d each per layer forward, ×3 with backward; "
    "bidirectional, no causal halving), H = the classification head's parameters (one token per row)"
)


def training_flops(model: Any, lengths: np.ndarray, batches: list[np.ndarray] | None = None) -> dict[str, float]:
    """Training FLOPs of one pass over rows of ``lengths`` tokens (``FLOPS_FORMULA``), counted on the real
    tokens (each row over its own length) and, with ``batches``, on what the model computed (every row at
    its batch's padded width). A DistilBERT-family classifier (``config.n_layers``, ``config.dim``)."""
    cfg, prefix = model.config, model.base_model_prefix + "."
    layers, dim = cfg.n_layers, cfg.dim
    body = sum(p.numel() for name, p in model.named_parameters() if name.startswith(prefix) and "embeddings" not in name)
    head = sum(p.numel() for name, p in model.named_parameters() if not name.startswith(prefix))
    n = lengths.astype(np.float64)

    def flops(width: np.ndarray) -> float:
        return float(np.sum(6 * body * width + 12 * layers * dim * width**2 + 6 * head))

    out = {"non_embedding_params": float(body), "head_params": float(head), "flops_real_tokens": flops(n)}
    if batches is not None:
        out["flops_padded"] = sum(flops(np.full(len(rows), n[rows].max())) for rows in batches)
    return out
