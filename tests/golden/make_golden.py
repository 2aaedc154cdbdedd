"""Writes the golden streams of tests/test_fixedpoint.py (run once, from the repository root; commit the output).

    python tests/golden/make_golden.py

tiny.pt: a small random 2-layer RIDE (saved, so the golden test does not depend on torch's random streams);
image_24x32.png: a deterministic test image (numpy PCG64); *.ride: their format-2 streams under tiny.pt and
the shipped bsds300_ride2_long2, with the settings named in the file names.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

import ride
from ride.codec import compress

HERE = Path(__file__).parent


def main() -> None:
    rng = np.random.default_rng(20261206)
    yy, xx = np.mgrid[0:24, 0:32]
    smooth = 128 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.integers(-12, 13, (24, 32))
    image = np.clip(np.rint(smooth), 0, 255).astype(np.uint8)
    Image.fromarray(image, mode="L").save(HERE / "image_24x32.png")
    import sys

    sys.path.insert(0, str(HERE.parent))
    from conftest import make_smooth_images, randomize

    torch.manual_seed(7)
    tiny = ride.RIDE(1, 6, 2, 4, 3, 3, 5).double()
    randomize(tiny, 7)
    tiny.fit_preconditioner(make_smooth_images(8, 1, 16, 16, seed=1007))
    tiny = tiny.float()
    ride.save(tiny, HERE / "tiny.pt")
    tiny = ride.load(HERE / "tiny.pt")
    long2 = ride.pretrained("bsds300_ride2_long2")
    for name, model in (("tiny", tiny), ("long2", long2)):
        for stripes, bits in ((1, 2), (3, 1)):
            data = compress(model, image, stripes=stripes, digit_bits=bits)
            (HERE / f"{name}_s{stripes}_b{bits}.ride").write_bytes(data)


if __name__ == "__main__":
    main()
