"""Name -> model-constructor registry (timm's `create_model`, for Flax linen).

A family module registers each variant with `@register("name")` on a function that takes
`num_classes` and keyword options and returns a linen Module. The module has a `smallest_input()`
method, the smallest image side it takes, and raises a one-line ValueError naming it on smaller images.
"""

import dataclasses
import inspect
import typing
from collections.abc import Callable

import flax.linen as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
  def decorator(builder: Callable[..., nn.Module]):
    if name in _REGISTRY:
      raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = builder
    return builder

  return decorator


def builders() -> list[Callable[..., nn.Module]]:
  return list(_REGISTRY.values())


def names() -> list[str]:
  return sorted(_REGISTRY)


def create(name: str, num_classes: int, **options) -> nn.Module:
  """Builds the registered model `name` for `num_classes` classes, as a top-level module named `name` (the
  name of a top-level module places no variables; its errors quote it)."""
  if name not in _REGISTRY:
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(names())}")
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
  try:
    model = _REGISTRY[name](num_classes=num_classes, **options)
  except TypeError as e:
    raise ValueError(f"bad options for model {name!r}: {e}") from None
  return model.clone(name=name)


def option_defaults(name: str) -> dict[str, tuple[object, type | None]]:
  """The keyword options `create(name, ...)` takes: (the value the model uses when it is not given, the option's
  type where its annotation or default names one) for the builder's own keyword parameters and its module's fields
  that have a default (a field the builder also sets, such as a ResNet's `bottleneck`, is listed; passing it is
  create's "bad options" error)."""
  model = create(name, num_classes=2)

  def typed(default, annotation):
    kinds = [t for t in typing.get_args(annotation) or (annotation,) if isinstance(t, type) and t is not type(None)]
    return default, type(default) if default is not None else kinds[0] if kinds else None

  options = {
    field.name: typed(getattr(model, field.name), field.type)
    for field in dataclasses.fields(model)
    if field.init
    and field.name not in ("parent", "name", "num_classes")
    and (field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING)
  }
  for parameter in inspect.signature(_REGISTRY[name]).parameters.values():
    if parameter.kind is parameter.KEYWORD_ONLY or (
      parameter.kind is parameter.POSITIONAL_OR_KEYWORD and parameter.default is not parameter.empty
    ):
      options[parameter.name] = typed(parameter.default, parameter.annotation)
  return options
