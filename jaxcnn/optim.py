"""Optimizers, learning-rate schedules and the host-side training controls, all from config fields.

The papers' recipes as config values:
- AlexNet (Sec. 5): SGD, momentum 0.9, coupled weight decay 5e-4, lr 0.01 divided by 10 when the
  validation error stops improving (three times): `schedule="plateau"`.
- VGG (Sec. 3.1): the same rule with lr 1e-2. ResNet (Sec. 3.4): lr 0.1, /10 on plateau, wd 1e-4;
  CIFAR (Sec. 4.2): /10 at 32k and 48k iterations (`schedule="step"`, `lr_boundaries_steps`), and
  ResNet-110's 0.01 warm-up for about 400 iterations (`warmup_mode="constant"`).
- GoogLeNet (Sec. 6): lr decreased by 4% every 8 epochs (`schedule="exponential"`) and Polyak
  averaging of the weights (`ema_decay`).
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

SCHEDULES = ("constant", "step", "exponential", "cosine", "plateau")
OPTIMIZERS = ("sgd", "adam", "adamw")


def base_learning_rate(config) -> float:
  """`learning_rate`, scaled linearly with the batch size when `lr_reference_batch_size` is set."""
  if config.lr_reference_batch_size:
    return config.learning_rate * config.batch_size / config.lr_reference_batch_size
  return config.learning_rate


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  """The schedule named by `config.schedule`, after `config.warmup_epochs` of warm-up.

  Step and exponential boundaries are counted from step 0 of the run (the warm-up included), as the papers
  count them; a cosine decays from the warm-up's end to the run's.
  For `plateau`, this is the constant base rate; the divisions come from `ReduceOnPlateau`.
  """
  base = base_learning_rate(config)
  if config.schedule not in SCHEDULES:
    raise ValueError(f"unknown schedule {config.schedule!r}; known schedules: {', '.join(SCHEDULES)}")
  if base <= 0:
    raise ValueError(f"learning_rate must be > 0, got {config.learning_rate}")
  total_steps = config.num_epochs * steps_per_epoch
  warmup_steps = int(round(config.warmup_epochs * steps_per_epoch)) + config.warmup_steps
  if config.schedule in ("constant", "plateau"):
    main = optax.constant_schedule(base)
  elif config.schedule == "cosine":
    # From the warm-up's end to the run's: the peak right after the warm-up, zero at the last step.
    cosine = optax.cosine_decay_schedule(base, decay_steps=max(total_steps - warmup_steps, 1))
    main = lambda step: cosine(step - warmup_steps)
  elif config.schedule == "exponential":
    main = optax.exponential_decay(
      base,
      transition_steps=int(round(config.lr_decay_every_epochs * steps_per_epoch)),
      decay_rate=config.lr_decay_factor,
      staircase=True,
    )
  else:
    boundaries = [int(round(e * steps_per_epoch)) for e in config.lr_boundaries_epochs] + list(
      config.lr_boundaries_steps
    )
    if not boundaries:
      raise ValueError(
        "schedule 'step' needs lr_boundaries_epochs or lr_boundaries_steps, e.g. "
        "--config.lr_boundaries_epochs='(30, 60)'"
      )
    main = optax.piecewise_constant_schedule(base, dict.fromkeys(sorted(boundaries), config.lr_decay_factor))
  if not warmup_steps:
    return main
  if config.warmup_mode == "linear":
    warmup = optax.linear_schedule(config.warmup_init_lr, base, warmup_steps)
  elif config.warmup_mode == "constant":
    warmup = optax.constant_schedule(config.warmup_init_lr)
  else:
    raise ValueError(f"unknown warmup_mode {config.warmup_mode!r}; known: linear, constant")
  # join_schedules restarts the count at the boundary; the main schedule must keep the run's count.
  return lambda step: jnp.where(step < warmup_steps, warmup(step), main(step))


def scale_by_learning_rate(schedule: optax.Schedule, constant: bool = False) -> optax.GradientTransformationExtraArgs:
  """`optax.scale_by_learning_rate(schedule)`, whose rate the caller may give: `update(..., learning_rate=lr)`
  multiplies the updates by -lr, the same floats as -schedule(count) when lr is the schedule's float32 value
  (`learning_rates`). The train step passes each step's rate in, so its compiled program holds no schedule (nor
  the epoch count, steps per epoch or base rate the schedule depends on); without one, the schedule is applied
  in place, as optax does. The state is optax's `ScaleByScheduleState` either way (its count advances), so
  checkpoints keep their structure.

  `constant`: the schedule is one number (constant and plateau without warm-up). Inside a step XLA folded it
  into the plateau factor (updates * (factor * -rate)); with a rate given, this leaves the updates to
  `scale_by_lr_factor(with_rate=True)`, which multiplies in that order: the same floats as before."""

  def init(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update(updates, state, params=None, *, learning_rate=None, **extra_args):
    del params, extra_args
    if learning_rate is None or not constant:
      step_size = -1 * (schedule(state.count) if learning_rate is None else learning_rate)
      updates = jax.tree.map(lambda g: jnp.array(step_size, dtype=g.dtype) * g, updates)
    return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

  return optax.GradientTransformationExtraArgs(init, update)


def has_constant_rate(config) -> bool:
  """Whether the schedule is one number (constant and plateau without warm-up): the step then multiplies the
  rate into the plateau factor first (`scale_by_learning_rate`), a program of its own (train.train_step_key)."""
  return config.schedule in ("constant", "plateau") and not (config.warmup_epochs or config.warmup_steps)


def learning_rates(schedule: optax.Schedule):
  """`rates(first, count)`: the float32 rates of the optimizer's updates first .. first + count - 1 (0-based), the
  values `schedule` gives inside a step, computed in one program on the default device (the train loop asks once
  per epoch)."""
  compiled = jax.jit(jax.vmap(lambda count: jnp.asarray(schedule(count), jnp.float32)))

  def rates(first: int, count: int) -> np.ndarray:
    return np.asarray(compiled(np.arange(first, first + count, dtype=np.int32)))

  return rates


class LrFactorState(NamedTuple):
  lr_factor: jax.Array  # multiplies every update; lowered by ReduceOnPlateau


def scale_by_lr_factor(with_rate: bool = False) -> optax.GradientTransformationExtraArgs:
  """Multiplies the updates by the plateau factor; `with_rate`, by factor * -learning_rate when a rate is given
  (see `scale_by_learning_rate`'s `constant`)."""

  def init(params):
    del params
    return LrFactorState(lr_factor=jnp.ones((), jnp.float32))

  def update(updates, state, params=None, *, learning_rate=None, **extra_args):
    del params, extra_args
    scale = state.lr_factor
    if with_rate and learning_rate is not None:
      scale = scale * -learning_rate
    return jax.tree.map(lambda u: u * scale.astype(u.dtype), updates), state

  return optax.GradientTransformationExtraArgs(init, update)


def _is_lr_factor(node) -> bool:
  return isinstance(node, LrFactorState)


def lr_factor(opt_state) -> float:
  """The plateau factor (the same in every parameter group's chain)."""
  states = [s for s in jax.tree.leaves(opt_state, is_leaf=_is_lr_factor) if _is_lr_factor(s)]
  return float(states[0].lr_factor)


def set_lr_factor(opt_state, value: float):
  """`opt_state` with every parameter group's plateau factor set to `value`."""
  return jax.tree.map(
    lambda s: LrFactorState(jnp.asarray(value, jnp.float32)) if _is_lr_factor(s) else s,
    opt_state,
    is_leaf=_is_lr_factor,
  )


def _decay_mask(params):
  """True for the weights that weight decay applies to when biases and norm parameters are exempt."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def describe(config) -> list[str]:
  """The optimizer and schedule in effect, as a run's start lines."""
  if config.optimizer == "sgd":
    direction = (
      f"momentum {config.momentum:g}{', Nesterov' if config.nesterov else ''}" if config.momentum else "no momentum"
    )
  else:
    direction = f"betas ({config.adam_b1:g}, {config.adam_b2:g})"
  exempt = "" if config.decay_biases_and_norms else ", biases and norms exempt"
  lines = [
    f"optimizer: {config.optimizer}, {direction}, weight decay {config.weight_decay:g} "
    f"({config.weight_decay_mode}{exempt})"
    + (f", gradient norm clipped at {config.grad_clip_norm:g}" if config.grad_clip_norm else "")
    + (f", label smoothing {config.label_smoothing:g}" if config.label_smoothing else "")
  ]
  schedule = {
    "step": f"step (x{config.lr_decay_factor:g} at epochs {tuple(config.lr_boundaries_epochs)} / steps "
    f"{tuple(config.lr_boundaries_steps)})",
    "exponential": f"exponential (x{config.lr_decay_factor:g} every {config.lr_decay_every_epochs:g} epochs)",
    "plateau": f"plateau (x{config.plateau_factor:g} after {config.plateau_patience} epochs without a "
    f"better {config.plateau_metric})",
  }.get(config.schedule, config.schedule)
  warmup = config.warmup_epochs or config.warmup_steps
  scaling = (
    f" = {config.learning_rate:g} x {config.batch_size}/{config.lr_reference_batch_size} (linear scaling from the "
    f"batch the rate was published for)"
    if config.lr_reference_batch_size and config.batch_size != config.lr_reference_batch_size
    else ""
  )
  lines.append(
    f"learning rate: {base_learning_rate(config):g}{scaling}, {schedule} over {config.num_epochs} epochs"
    + (
      f", {config.warmup_mode} warm-up ({config.warmup_epochs:g} epochs + {config.warmup_steps} steps)"
      if warmup
      else ""
    )
  )
  return lines


def create(config, steps_per_epoch: int, parameter_groups=None) -> optax.GradientTransformation:
  """The optimizer of `config.optimizer` with the schedule, decay, clipping and plateau factor.

  Coupled decay (the papers'): v <- m*v - lr*(wd*w + grad), the L2 term joins the gradient before
  the momentum trace. Decoupled decay (Loshchilov & Hutter): the decay skips the momentum/Adam
  statistics and is scaled by the learning rate alone.

  `parameter_groups(params)` labels each leaf "head" or "backbone"; it is used when the backbone is
  frozen (its updates are zero: no decay, no momentum) or trains at `backbone_lr_multiplier` times the rate.
  """
  if config.optimizer not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {config.optimizer!r}; known optimizers: {', '.join(OPTIMIZERS)}")
  if config.weight_decay < 0:
    raise ValueError(f"weight_decay must be >= 0, got {config.weight_decay}")
  if config.weight_decay_mode not in ("coupled", "decoupled"):
    raise ValueError(f"unknown weight_decay_mode {config.weight_decay_mode!r}; known: coupled, decoupled")
  schedule = learning_rate_schedule(config, steps_per_epoch)
  constant_rate = has_constant_rate(config)
  mask = None if config.decay_biases_and_norms else _decay_mask
  decay = optax.add_decayed_weights(config.weight_decay, mask=mask)
  if config.optimizer == "sgd":
    direction = optax.trace(decay=config.momentum, nesterov=config.nesterov) if config.momentum else optax.identity()
  else:  # adam / adamw differ only in the default decay mode of their configs
    direction = optax.scale_by_adam(b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)
  coupled = config.weight_decay_mode == "coupled"
  tx = optax.chain(
    optax.clip_by_global_norm(config.grad_clip_norm) if config.grad_clip_norm else optax.identity(),
    decay if coupled else optax.identity(),
    direction,
    optax.identity() if coupled else decay,
    # The rate from the step's `learning_rate` argument, else from the schedule.
    scale_by_learning_rate(schedule, constant_rate),
    scale_by_lr_factor(with_rate=constant_rate),
  )
  if not (config.freeze_backbone or config.backbone_lr_multiplier != 1.0):
    return tx
  if parameter_groups is None:
    raise ValueError("freeze_backbone / backbone_lr_multiplier need the model's parameter groups")
  backbone = (
    optax.set_to_zero() if config.freeze_backbone else optax.chain(tx, optax.scale(config.backbone_lr_multiplier))
  )
  return optax.multi_transform({"head": tx, "backbone": backbone}, parameter_groups)


@dataclasses.dataclass
class ReduceOnPlateau:
  """Divides the learning rate when a validation metric stops improving (AlexNet Sec. 5, VGG 3.1).

  Lower is better (`validation_top1_error`, `validation_loss`). State is plain numbers, stored in the
  checkpoint metadata so a resumed run continues the same count.
  """

  factor: float
  patience: int
  min_delta: float
  max_reductions: int
  best: float = float("inf")
  bad_epochs: int = 0
  reductions: int = 0

  def update(self, value: float) -> bool:
    """Records one epoch's metric; True when the rate should be divided now."""
    if value < self.best - self.min_delta:
      self.best, self.bad_epochs = value, 0
      return False
    self.bad_epochs += 1
    if self.bad_epochs > self.patience and (self.max_reductions <= 0 or self.reductions < self.max_reductions):
      self.bad_epochs, self.reductions = 0, self.reductions + 1
      return True
    return False


@dataclasses.dataclass
class EarlyStopping:
  """Stops training when the validation loss has not improved for `patience` epochs (the tutorials')."""

  patience: int
  min_delta: float
  best: float = float("inf")
  bad_epochs: int = 0

  def update(self, value: float) -> bool:
    if value < self.best - self.min_delta:
      self.best, self.bad_epochs = value, 0
    else:
      self.bad_epochs += 1
    return self.bad_epochs >= self.patience
