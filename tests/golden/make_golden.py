"""Writes the golden streams of tests/test_fixedpoint.py (run once, from the repository root; commit the output).

    python tests/golden/make_golden.py            # grey (format 2)
    python tests/golden/make_golden.py --repeat   # grey with the repeat flag (format 7), from the committed files
    python tests/golden/make_golden.py --colour   # colour (format 3)
    python tests/golden/make_golden.py --colour-clip   # colour (format 5), from the committed colour/ files
    python tests/golden/make_golden.py --colour-repeat   # colour with the repeat flag (format 6), likewise
    python tests/golden/make_golden.py --colour-maps   # colour with the flag and the adaptive maps (format 8), likewise

tiny.pt: a small random 2-layer RIDE (saved, so the golden test does not depend on torch's random streams);
image_24x32.png: a deterministic test image (numpy PCG64); *.ride: their format-2 streams under tiny.pt and
the shipped bsds300_ride2_long2, with the settings named in the file names. colour/: the same for the colour
codec (format 3): tiny_colour.pt (conftest.make_tiny_lossless_colour, 2 layers), image_rgb_20x26.png and its
streams; colour/colour_clip*.ride: format 5, the same model with its cells clipped at CLIP (`with_cell_clip`);
colour/colour_repeat*.ride: format 6 (the repeat flag), the unclipped model on the image with a flat block pasted in;
colour/colour_maps*.ride: format 8 (the flag and the adaptive probability maps), the same model and image;
tiny_repeat*.ride: the same for grey (format 7).
"""

import sys
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
            data = compress(model, image, stripes=stripes, digit_bits=bits, repeat=False)
            (HERE / f"{name}_s{stripes}_b{bits}.ride").write_bytes(data)


def main_repeat() -> None:
    sys.path.insert(0, str(HERE.parent))
    from conftest import repeat_image

    image = repeat_image(np.asarray(Image.open(HERE / "image_24x32.png")))
    tiny = ride.load(HERE / "tiny.pt")
    (HERE / "tiny_repeat_s2_b2.ride").write_bytes(compress(tiny, image, stripes=2, digit_bits=2, repeat=True))


def main_colour() -> None:
    import sys

    sys.path.insert(0, str(HERE.parent))
    from conftest import make_tiny_lossless_colour

    out = HERE / "colour"
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(20261207)
    yy, xx = np.mgrid[0:20, 0:26]
    base = 120 + 50 * np.sin(xx / 4.0) * np.cos(yy / 6.0)
    rgb = np.stack([base + 30, 0.8 * base + 10, 0.5 * base + 40 * np.cos(xx / 9.0)], 2)
    image = np.clip(np.rint(rgb + rng.integers(-8, 9, (20, 26, 3))), 0, 255).astype(np.uint8)
    Image.fromarray(image, mode="RGB").save(out / "image_rgb_20x26.png")
    ride.save(make_tiny_lossless_colour("rgb", 2, seed=3), out / "tiny_colour.pt")
    model = ride.load(out / "tiny_colour.pt")
    for stripes, bits in ((1, 2), (2, 1)):
        (out / f"colour_s{stripes}_b{bits}.ride").write_bytes(compress(model, image, stripes=stripes, digit_bits=bits,
                                                                       repeat=False))


CLIP = 0.25  # tight enough that the tiny model's cells reach it on the golden image (the stream differs)


def main_colour_clip() -> None:
    from ride.growth import with_cell_clip

    out = HERE / "colour"
    model = with_cell_clip(ride.load(out / "tiny_colour.pt"), CLIP)
    image = np.asarray(Image.open(out / "image_rgb_20x26.png"))
    (out / "colour_clip_s2_b2.ride").write_bytes(compress(model, image, stripes=2, digit_bits=2, repeat=False))


def main_colour_repeat(maps: bool = False) -> None:
    """Format 6 (the repeat flag), or 8 (the flag and the adaptive maps) with `maps`."""
    sys.path.insert(0, str(HERE.parent))
    from conftest import repeat_image

    out = HERE / "colour"
    model = ride.load(out / "tiny_colour.pt")
    image = repeat_image(np.asarray(Image.open(out / "image_rgb_20x26.png")))
    name = "colour_maps_s2_b2.ride" if maps else "colour_repeat_s2_b2.ride"
    (out / name).write_bytes(compress(model, image, stripes=2, digit_bits=2, repeat=True, maps=maps))


if __name__ == "__main__":
    if "--colour-clip" in sys.argv:
        main_colour_clip()
    elif "--colour-repeat" in sys.argv:
        main_colour_repeat()
    elif "--colour-maps" in sys.argv:
        main_colour_repeat(maps=True)
    elif "--repeat" in sys.argv:
        main_repeat()
    else:
        main() if "--colour" not in sys.argv else main_colour()
