"""Fields shared by every experiment. Each named config starts from `get_config()` here."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Data.
  c.dataset = "fashion_mnist"
  c.data_dir = ""  # "" = $JAXCNN_DATA_DIR, then Debian's /usr/share/datasets/<dataset>, then TFDS.
  c.validation_size = 5000  # carved from the training split with a fixed seed; 0 = no validation
  c.validation_fraction = 0.0  # > 0: carve this fraction instead (datasets with their own validation split keep it)
  c.pipeline = "auto"  # tfdata | jax (TF-free, in-memory datasets) | auto (tfdata when TensorFlow is installed)
  # Augmentation chains (jaxcnn/data/augment.py): ops joined by "|", e.g. "pad(4)|random_crop(32)|flip_lr",
  # or a paper's preset: alexnet, vgg, googlenet, resnet, resnet_cifar (train); center, ten_crop, ... (eval).
  c.train_augment = ""
  c.eval_augment = ""
  c.image_size = 0  # > 0: images are resized to image_size x image_size (and presets crop that size); 0 = native
  c.skip_bad_images = False  # image folders: leave unreadable files out (with a warning) instead of failing
  c.stats_file = ""  # mean/std/PCA statistics (python -m jaxcnn.data.stats); "" = DATA_DIR/jaxcnn_stats.json
  c.synthetic = ml_collections.ConfigDict(
      {"image_shape": (32, 32, 3), "num_classes": 10, "num_train": 1024, "num_test": 256})  # dataset=synthetic
  c.eval_split = "test"  # split that --mode=eval evaluates: "test" or "validation"
  # Model.
  c.model = "lenet5"
  c.model_options = ml_collections.ConfigDict()  # keyword options of the model's builder (models.create)
  c.aux_loss_weight = 0.3  # weight of auxiliary classifiers' losses (GoogLeNet, Section 5); unused by others
  # Optimisation. batch_size is global: it is split over every device of every process.
  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_epochs = 10
  c.optimizer = "sgd"
  c.learning_rate = 0.05
  c.momentum = 0.9
  c.nesterov = False
  c.weight_decay = 5e-4  # coupled L2: added to the gradient before momentum, as in the papers
  c.schedule = "cosine"  # constant | cosine | step
  c.lr_boundaries_epochs = ()  # for schedule=step: multiply by lr_decay_factor at each epoch listed
  c.lr_decay_factor = 0.1
  c.warmup_epochs = 0.0
  # Bookkeeping.
  c.seed = 0
  c.checkpoint_max_to_keep = 3
  c.log_every_steps = 50
  return c
