"""Classification metrics as per-batch sums on the devices, and their means on the host."""

import jax
import jax.numpy as jnp
import numpy as np
import optax


def metric_sums(logits, labels, mask=None) -> dict:
  """Per-batch sums (not means), so that padded examples and uneven batches average correctly."""
  mask = jnp.ones(labels.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
  logits = logits.astype(jnp.float32)
  losses = optax.softmax_cross_entropy(logits, jax.nn.one_hot(labels, logits.shape[-1]))
  top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
  return {
    "loss": jnp.sum(losses * mask),
    "top1": jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
    "top5": jnp.sum(jnp.any(top5 == labels[:, None], axis=-1) * mask),
    "count": jnp.sum(mask),
  }


def summarize(sums: list[dict], prefix: str) -> dict:
  """Means from a list of per-batch metric sums already on the host (a confusion matrix is summed too; per-example
  outputs, the eval step's `examples`, are not sums and are left out)."""
  totals = {k: np.sum([s[k] for s in sums], axis=0) for k in sums[0] if k != "examples"} if sums else {}
  count = max(float(totals.get("count", 0.0)), 1.0)
  top1 = float(totals.get("top1", 0.0)) / count
  summary = {
    f"{prefix}_loss": float(totals.get("loss", 0.0)) / count,
    f"{prefix}_top1_accuracy": top1,
    f"{prefix}_top1_error": 1.0 - top1,
    f"{prefix}_top5_accuracy": float(totals.get("top5", 0.0)) / count,
    f"{prefix}_num_examples": int(totals.get("count", 0.0)),
  }
  if "confusion" in totals:
    summary[f"{prefix}_confusion"] = totals["confusion"].astype(np.int64)
  return summary
