"""Data sets, one module each: BSDS300 (`bsds300`, its downloader `download`), image folders (`folders`), Brodatz
textures (`brodatz`), the Wikimedia photographs and USC-SIPI aerials (`photos`), CIFAR-10 (`cifar10`), dead leaves
(`deadleaves`) and the cached 63-dim BSDS300 patches (`patches63`); `common` holds the data root and image reading.

Image data sets are `torch.utils.data.Dataset`s of uint8 tensors [C, H, W]; every data set has `describe()`.
"""

from .brodatz import Brodatz, black_bottom_rows
from .bsds300 import BSDS300, BSDS300_SPLITS, bsds300_split_ids
from .cifar10 import CIFAR10, read_cifar10_batch, write_cifar10_batch
from .common import GREY_MODES, IMAGE_EXTENSIONS, load_image, read_image, resolve_root
from .deadleaves import DeadLeaves
from .download import BSDS300_URL, download_bsds300, extract_bsds300
from .folders import ImageFolder
from .patches63 import (
    BSDS300_PATCH_COUNTS,
    BSDS300_PATCH_SEEDS,
    BSDS300_PATCH_SIZE,
    BSDS300Patches,
    default_cache_dir,
    random_patches,
)
from .photos import PHOTO_SPLITS, USCSIPIAerials, WikipediaPhotos, every_kth_split

__all__ = [
    "BSDS300", "BSDS300_PATCH_COUNTS", "BSDS300_PATCH_SEEDS", "BSDS300_PATCH_SIZE", "BSDS300_SPLITS", "BSDS300_URL",
    "BSDS300Patches", "Brodatz", "CIFAR10", "DeadLeaves", "GREY_MODES", "IMAGE_EXTENSIONS", "ImageFolder",
    "PHOTO_SPLITS", "USCSIPIAerials", "WikipediaPhotos", "black_bottom_rows", "bsds300_split_ids",
    "default_cache_dir", "download_bsds300", "every_kth_split", "extract_bsds300", "load_image", "random_patches",
    "read_cifar10_batch", "read_image", "resolve_root", "write_cifar10_batch",
]
