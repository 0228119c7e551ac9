"""The benchmark's record of one model and its table."""

import dataclasses


@dataclasses.dataclass
class Record:
  model: str
  batch_size: int
  image_shape: tuple[int, int, int]
  precision: str
  mode: str
  parallelism: str
  devices: int
  device_kind: str
  params: int
  macs: int  # forward multiply-adds per image
  images_per_sec: float
  images_per_sec_runs: list[float]
  steps_per_run: int
  compile_seconds: float
  compile_source: str
  step_flops: float  # model FLOPs per device and step: 6 x forward multiply-adds x per-device batch
  xla_step_flops: float | None  # XLA's cost analysis of the compiled step (without cuDNN calls on GPUs)
  mfu: float | None
  peak_memory_bytes: int | None
  load_average: tuple[float, float] = ()  # 1-minute host load before and after: other users' work skews timings
  pytorch: str | None = None
  pytorch_params: int | None = None
  pytorch_macs: int | None = None
  pytorch_images_per_sec: float | None = None
  pytorch_images_per_sec_runs: list[float] | None = None
  ratio: float | None = None
  pytorch_compiled_images_per_sec: float | None = None
  pytorch_compiled_images_per_sec_runs: list[float] | None = None
  compiled_ratio: float | None = None
  no_ratio_because: str | None = None  # why the ratio is not printed: unequal work, another device count, ...
  pytorch_compiled_error: str | None = None
  pytorch_plain_images_per_sec: float | None = None  # the self-check: the same twin in a plain loop
  pytorch_plain_images_per_sec_runs: list[float] | None = None
  bench_fault: str | None = None  # the bench's PyTorch figure is off the plain loop's: no ratio


def _or_na(value, fmt: str) -> str:
  return "n/a" if value is None else format(value, fmt)


def table(records: list[Record]) -> str:
  header = (
    f"{'model':<14} {'input':<10} {'batch':>5} {'params':>12} {'MMACs':>9} {'img/s':>9} {'compile s':>10} "
    f"{'peak mem MiB':>12} {'MFU':>6} {'PT eager':>9} {'ratio':>6} {'PT comp.':>9} {'ratio':>6} {'load':>9}"
  )
  lines = [header, "-" * len(header)]
  notes = []
  for r in records:
    memory = None if r.peak_memory_bytes is None else r.peak_memory_bytes / 2**20
    compile_s = f"{r.compile_seconds:.2f}{'c' if r.compile_source.startswith('loaded') else ''}"
    lines.append(
      f"{r.model:<14} {'x'.join(map(str, r.image_shape)):<10} {r.batch_size:>5} {r.params:>12,} "
      f"{r.macs / 1e6:>9,.1f} {r.images_per_sec:>9.1f} {compile_s:>10} {_or_na(memory, '.0f'):>12} "
      f"{_or_na(r.mfu, '.1%'):>6} {_or_na(r.pytorch_images_per_sec, '.1f'):>9} "
      f"{_or_na(r.ratio, '.2f'):>6} {_or_na(r.pytorch_compiled_images_per_sec, '.1f'):>9} "
      f"{_or_na(r.compiled_ratio, '.2f'):>6} {r.load_average[0]:>4.1f}-{r.load_average[1]:<4.1f}"
    )
    if r.no_ratio_because:
      notes.append(f"  {r.model}: no ratio: {r.no_ratio_because}")
    if r.pytorch_compiled_error:
      notes.append(f"  {r.model}: no torch.compile column: {r.pytorch_compiled_error}")
  if any(r.compile_source.startswith("loaded") for r in records):
    notes.append("  compile s ending in c: loaded from the persistent compilation cache")
  return "\n".join([*lines, *notes])
