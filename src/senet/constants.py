"""Names and numbers that several layers of senet share."""

# The input normalisation of ImageNet models, per RGB channel on the 0–1 scale: the mean and standard deviation of the
# ImageNet-1k training images, used by torchvision, timm and the PyTorch port of the paper's released models alike.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The same of CIFAR-10's 50,000 training images, the dataset of the CIFAR networks (paper Table 4).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

# The files of a training run's folder that other commands read (senet.training.checkpoint describes them all).
STATE_FILE = "state.safetensors"  # everything --resume needs
GOOD_STATE_FILE = "state.good.safetensors"  # the last state known to be usable
LAST_FILE = "last.safetensors"  # the weights after the last epoch: what a run folder means to eval, predict, export
BEST_FILE = "best.safetensors"  # the weights at the best test accuracy
CONFIG_FILE = "config.yaml"  # the recipe the run was started with (what --resume and eval read back)
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
# A run's own files: no other command's output may replace them (`senet.files.refuse_overwrite`).
RUN_FILES = (STATE_FILE, GOOD_STATE_FILE, LAST_FILE, BEST_FILE, CONFIG_FILE, METRICS_FILE, SUMMARY_FILE)
