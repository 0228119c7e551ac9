"""Fields shared by every experiment. Each named config starts from `get_config()` here."""

import json

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Data.
  c.dataset = "fashion_mnist"
  c.data_dir = ""  # "" = $JAXCNN_DATA_DIR, then Debian's /usr/share/datasets/<dataset>, then TFDS.
  # "auto": the dataset's own validation split, else 10% of train (at most 5,000 images) carved with a fixed
  # seed; a number carves that many; 0 = no validation. Ignored when validation_fraction > 0.
  c.validation_size = ml_collections.FieldReference("auto", field_type=object)
  # In [0, 1): > 0 carves this fraction of train and overrides validation_size, whatever its value (a config's
  # validation_size=5000 and a command line's validation_fraction=0.2 give 20%); the start line names the setting
  # used. Datasets with their own validation split keep it.
  c.validation_fraction = 0.0
  c.pipeline = "auto"  # tfdata | jax (TF-free) | auto (jax for in-memory data, or files without TensorFlow)
  # Image folders: the train chain's deterministic head decoded once into uint8 rows (jaxcnn/data/cache.py) at
  # "auto" ($JAXCNN_CACHE_DIR/data, else ~/.cache/jaxcnn/data), a directory, or "" (off); pipeline auto or jax.
  c.data_cache = "auto"
  c.data_cache_max_disk_fraction = 0.5  # refuse rows that would take more than this fraction of the free disk
  c.data_cache_format = "auto"  # "raw" uint8 rows, "jpeg" (quality 90, ~1/10 of the disk), "auto": raw where they fit
  # Augmentation chains (jaxcnn/data/augment.py): ops joined by "|", e.g. "pad(4)|random_crop(32)|flip_lr",
  # or a paper's preset: alexnet, vgg, googlenet, resnet, resnet_cifar (train); center, ten_crop, ... (eval). A
  # preset fits any source (jaxcnn/data/recipe.py); a chain written out applies exactly as written.
  c.train_augment = ""
  c.eval_augment = ""
  c.image_size = 0  # > 0: the model's input is image_size x image_size (presets crop that size); 0 = native
  c.skip_bad_images = False  # image folders: leave unreadable files out (with a warning) instead of failing
  c.stats_file = ""  # mean/std/PCA statistics (python -m jaxcnn.data.stats); "" = DATA_DIR/jaxcnn_stats.json
  c.synthetic = ml_collections.ConfigDict(
    {"image_shape": (32, 32, 3), "num_classes": 10, "num_train": 1024, "num_test": 256}
  )  # dataset=synthetic
  c.classes = ()  # a subset of class indices to keep, relabelled 0..k-1 in this order (e.g. transfer studies)
  c.eval_split = "test"  # split that --mode=eval evaluates: "test" or "validation"
  c.eval_weights = "raw"  # --mode=eval/predict: "raw" or "ema" (the averaged weights, when ema_decay > 0)
  # Model.
  c.model = "lenet5"
  c.model_options = ml_collections.ConfigDict()  # keyword options of the model's builder (models.create)
  c.aux_loss_weight = 0.3  # weight of auxiliary classifiers' losses (GoogLeNet, Section 5); unused by others
  # Transfer learning: start from another run's weights, with a new classifier head.
  c.init_from = ""  # a jaxcnn workdir (or its checkpoints/ folder) of the same model, any class count
  c.init_step = 0  # that run's checkpoint step (0 = its latest)
  c.freeze_backbone = False  # train the head(s) only: no updates and no BatchNorm statistics elsewhere
  c.backbone_lr_multiplier = 1.0  # fine-tuning: the backbone's learning rate relative to the head's
  # Optimisation (see optim.py for how each paper's recipe maps onto these).
  c.batch_size = 128  # global: split over every device of every process
  # Views evaluated at once (global): eval_batch_size // views images per eval step (AlexNet's ten crops: 100), a
  # multiple of the device count; a smaller split is padded only to a device multiple, and the memory plan lowers
  # it where the eval step would not fit the device.
  c.eval_batch_size = 1000
  c.num_epochs = 10
  c.optimizer = "sgd"  # sgd | adam | adamw
  c.learning_rate = 0.05
  # The batch `learning_rate` was published (or measured) for: a run at another batch_size scales the rate by
  # batch_size / this (the linear scaling rule, Goyal et al. 2017); 0 = never scale. Paper configs set it. A
  # --config.learning_rate on the command line is taken as given (jaxcnn.main sets this to 0 then).
  c.lr_reference_batch_size = 0
  c.momentum = 0.9
  c.nesterov = False
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.adam_eps = 1e-8
  c.weight_decay = 5e-4
  c.weight_decay_mode = "coupled"  # coupled: L2 added to the gradient before momentum, as in the papers
  c.decay_biases_and_norms = True  # the papers decay every weight; False exempts biases and norm scales
  c.grad_clip_norm = 0.0  # > 0: clip the global gradient norm
  c.label_smoothing = 0.0
  c.grad_accum_steps = 1  # > 1: each device's batch runs as this many micro-batches, one update
  c.ema_decay = 0.0  # > 0: keep an exponential moving (Polyak) average of the weights, evaluated too
  c.schedule = "cosine"  # constant | step | exponential | cosine | plateau
  c.lr_boundaries_epochs = ()  # schedule=step: multiply by lr_decay_factor at each epoch listed ...
  c.lr_boundaries_steps = ()  # ... or at each step listed
  c.lr_decay_factor = 0.1  # step and exponential schedules
  c.lr_decay_every_epochs = 8.0  # exponential schedule (GoogLeNet: 0.96 every 8 epochs)
  c.plateau_metric = "validation_top1_error"  # or validation_loss; lower is better
  c.plateau_factor = 0.1
  c.plateau_patience = 2  # epochs without improvement before dividing
  c.plateau_min_delta = 0.0
  c.plateau_max_reductions = 0  # 0 = no limit (AlexNet reduced 3 times)
  c.early_stopping_patience = 0  # > 0: stop after this many epochs without a better validation loss
  c.early_stopping_min_delta = 0.0
  c.stop_at_accuracy = 0.0  # > 0: end the run after the first epoch whose validation top-1 accuracy reaches this
  # The split stop_at_accuracy watches: "validation", or "test" (then also evaluated after every epoch; for
  # measuring time to a test accuracy, as `python -m jaxcnn.bench --mode=time_to_accuracy` does, never for
  # choosing a model).
  c.stop_at_accuracy_split = "validation"
  c.warmup_epochs = 0.0
  c.warmup_steps = 0  # added to warmup_epochs
  c.warmup_mode = "linear"  # linear: warmup_init_lr -> lr; constant: hold warmup_init_lr (ResNet-110)
  c.warmup_init_lr = 0.0
  # Execution.
  c.parallelism = "pmap"  # pmap | shard_map (jit over a device mesh); same update either way
  c.compute_dtype = "float32"  # or bfloat16: activations and matmuls; params and optimizer stay float32
  # Bookkeeping.
  c.seed = 0
  c.checkpoint_max_to_keep = 3  # the newest N ...
  c.checkpoint_keep_best = 1  # ... plus the best K by checkpoint_best_metric (lower is better)
  c.checkpoint_best_metric = "validation_top1_error"
  c.checkpoint_every_steps = 0  # > 0: also checkpoint every N steps (epoch ends are always saved)
  c.nan_policy = "stop"  # a non-finite loss stops the run ("stop") or its update is dropped ("skip")
  c.log_every_steps = 50
  # Watchdog (jaxcnn/watchdog.py): when no train or eval step completes for this long, every process writes
  # its threads' stacks and exits non-zero (a stuck peer or collective); 0 = off.
  c.step_timeout_seconds = 600.0
  c.first_step_timeout_seconds = 1800.0  # the same until the first step (data, restore, compile) and eval compiles
  return c


def on_imagenet(config: ml_collections.ConfigDict, train_augment: str, eval_augment: str) -> None:
  """A paper's ImageNet setting: ILSVRC-2012 through TFDS, the paper's augmentation chains (fitted to any
  other --config.dataset as recipe.py says), model selection on its validation split."""
  config.dataset = "imagenet2012"
  config.train_augment = train_augment
  config.eval_augment = eval_augment
  config.eval_split = "validation"


def divide_on_plateau(config: ml_collections.ConfigDict, patience: int, max_reductions: int = 0) -> None:
  """The learning rate divided by 10 once validation error stops improving for `patience` epochs."""
  config.schedule = "plateau"
  config.plateau_factor = 0.1
  config.plateau_patience = patience
  config.plateau_max_reductions = max_reductions


# The config fields that say what the network computes and how its input is prepared: a checkpoint is only ever
# restored (resumed, evaluated, predicted with) under the values it was trained with. Everything else (the split
# evaluated, eval batch, views, weights, data_dir, epochs, optimizer) may differ.
NETWORK_FIELDS = ("model", "model_options", "image_size", "classes", "dataset", "stats_file", "synthetic")


def comparable(value):
  """A config value as JSON stores it (ConfigDicts as dicts, tuples as lists), to compare stored with live."""
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  return json.loads(json.dumps(value, default=str))


def network_differences(stored, config) -> list[tuple[str, object, object]]:
  """(field, stored value, config's value) for each NETWORK_FIELDS entry in which `config` differs from a
  stored config (a checkpoint's, or config.json); a field either lacks counts as today's default."""
  defaults = get_config()
  differences = []
  for field in NETWORK_FIELDS:
    saved = comparable(stored.get(field, defaults.get(field)))
    current = comparable(config.get(field, defaults.get(field)))
    if saved != current:
      differences.append((field, saved, current))
  return differences
