"""Optimizers and learning-rate schedules built from a config."""

import optax


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  """The schedule named by `config.schedule`, after `config.warmup_epochs` of linear warm-up."""
  base = config.learning_rate
  total_steps = config.num_epochs * steps_per_epoch
  warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
  if config.schedule == "constant":
    main = optax.constant_schedule(base)
  elif config.schedule == "cosine":
    main = optax.cosine_decay_schedule(base, decay_steps=max(total_steps - warmup_steps, 1))
  elif config.schedule == "step":
    if not config.lr_boundaries_epochs:
      raise ValueError("schedule 'step' needs lr_boundaries_epochs, e.g. --config.lr_boundaries_epochs='(30, 60)'")
    boundaries = {int(round(e * steps_per_epoch)) - warmup_steps: config.lr_decay_factor for e in config.lr_boundaries_epochs}
    main = optax.piecewise_constant_schedule(base, boundaries)
  else:
    raise ValueError(f"unknown schedule {config.schedule!r}; known schedules: constant, cosine, step")
  if not warmup_steps:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, base, warmup_steps), main], [warmup_steps])


def create(config, steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD with momentum and the papers' coupled weight decay.

  The papers' update is v <- m*v - lr*(wd*w + grad): the L2 term joins the gradient before the
  momentum trace, which is what `add_decayed_weights` ahead of `sgd` computes.
  """
  schedule = learning_rate_schedule(config, steps_per_epoch)
  if config.optimizer != "sgd":
    raise ValueError(f"unknown optimizer {config.optimizer!r}; known optimizers: sgd")
  if config.weight_decay < 0 or config.learning_rate <= 0:
    raise ValueError(f"need learning_rate > 0 and weight_decay >= 0, got {config.learning_rate} and {config.weight_decay}")
  return optax.chain(
      optax.add_decayed_weights(config.weight_decay),
      optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov),
  )
