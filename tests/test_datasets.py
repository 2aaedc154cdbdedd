"""Data sets on small generated files (fake BSDS300 tree, images of every format, CIFAR-10 batches, textures),
the patch cache, the `ride data` commands, and, when RIDE_DATA is set, the real BSDS300 and Brodatz files."""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import re
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ride.cli import data as cli_data
from ride.data import (
    BSDS300,
    CIFAR10,
    Brodatz,
    BSDS300Patches,
    DeadLeaves,
    ImageFolder,
    bsds300_split_ids,
    cifar10,
    download,
    patches63,
    photos,
    random_patches,
    read_cifar10_batch,
    resolve_root,
    write_cifar10_batch,
)
from ride.deadleaves import DEAD_LEAVES_TEST_SEED, DEAD_LEAVES_TRAIN_SEED, dead_leaves_images
from ride.protocols import tiles as texture_tiles


def _rgb(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _fake_ids(num: int, seed: int) -> list[str]:
    """Numeric ids of 3 to 6 digits (so that string order differs from numeric order), shuffled."""
    rng = np.random.default_rng(seed)
    ids = set()
    while len(ids) < num:
        ids.add(str(int(rng.integers(100, 10 ** int(rng.integers(3, 7))))))
    return [str(i) for i in rng.permutation(sorted(ids, key=int))]


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    """A data root with a BSDS300 tree of 200 + 100 tiny RGB JPEGs (16x12 or 12x16) whose iid files list the
    ids in shuffled order."""
    root = tmp_path_factory.mktemp("data")
    ids = _fake_ids(300, seed=1)
    train_ids, test_ids = ids[:200], ids[200:]
    for part, ids in (("train", train_ids), ("test", test_ids)):
        folder = root / "bsds300" / "images" / part
        folder.mkdir(parents=True)
        for image_id in ids:
            shape = (16, 12) if int(image_id) % 3 else (12, 16)
            Image.fromarray(_rgb(*shape, seed=int(image_id))).save(folder / f"{image_id}.jpg", quality=95)
        (root / "bsds300" / f"iids_{part}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def _copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------------------------------------------------------
# Locating data


def test_missing_root_says_how_to_fix(monkeypatch):
    monkeypatch.delenv("RIDE_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="RIDE_DATA") as info:
        BSDS300(None, "test")
    assert "--data-root" in str(info.value) and "ride data download bsds300" in str(info.value)


def test_root_without_the_data_set(tmp_path, monkeypatch):
    monkeypatch.setenv("RIDE_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="RIDE_DATA") as info:
        resolve_root(None, "bsds300")
    assert str(tmp_path / "bsds300") in str(info.value)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        resolve_root(tmp_path / "nowhere", "brodatz")


def test_root_is_data_root_or_the_data_set_folder(fake_root, monkeypatch):
    assert resolve_root(fake_root, "bsds300") == fake_root / "bsds300"
    assert resolve_root(fake_root / "bsds300", "bsds300") == fake_root / "bsds300"
    monkeypatch.setenv("RIDE_DATA", str(fake_root))
    assert resolve_root(None, "bsds300") == fake_root / "bsds300"
    assert BSDS300(None, "val").ids == BSDS300(fake_root / "bsds300", "val").ids


# ----------------------------------------------------------------------------------------------------------------
# BSDS300


def test_split_ids_are_numeric_and_180_20():
    ids = _fake_ids(200, seed=3)
    test_ids = _fake_ids(100, seed=4)
    numeric = sorted(ids, key=int)
    assert numeric != sorted(ids)  # string order would differ: the test means something
    train, val = bsds300_split_ids(ids, test_ids, "train"), bsds300_split_ids(ids, test_ids, "val")
    assert (len(train), len(val)) == (180, 20)
    assert train == numeric[:180] and val == numeric[180:]
    assert bsds300_split_ids(ids, test_ids, "train+val") == numeric
    assert bsds300_split_ids(ids, test_ids, "test") == sorted(test_ids, key=int)
    with pytest.raises(ValueError, match="split"):
        bsds300_split_ids(ids, test_ids, "validation")


def test_bsds300_fake_tree(fake_root):
    lines = (fake_root / "bsds300" / "iids_train.txt").read_text().split()
    assert lines != sorted(lines, key=int)  # the file is shuffled: order must come from sorting
    sets = {s: BSDS300(fake_root, s) for s in ("train", "val", "train+val", "test")}
    assert [len(sets[s]) for s in ("train", "val", "train+val", "test")] == [180, 20, 200, 100]
    assert sets["train"].ids + sets["val"].ids == sets["train+val"].ids == sorted(lines, key=int)
    assert sets["test"].files[0].parent.name == "test"
    image = sets["val"][3]
    assert image.dtype == torch.uint8 and image.shape[0] == 1 and tuple(image.shape[1:]) in ((16, 12), (12, 16))
    with Image.open(sets["val"].files[3]) as img:  # luma as Pillow computes it (design §1)
        assert torch.equal(image[0], torch.from_numpy(np.array(img.convert("L"))))
    colour = BSDS300(fake_root, "val", grey=False)[3]
    assert colour.shape == (3, *image.shape[1:]) and colour.dtype == torch.uint8
    info = sets["test"].describe()
    assert info["num_images"] == 100 and info["num_pixels"] == 100 * 16 * 12
    assert sum(info["size_counts"].values()) == 100 and len(info["sizes"]) == 100


def test_bsds300_incomplete_or_bad_ids(fake_root, tmp_path):
    root = _copy_tree(fake_root / "bsds300", tmp_path / "bsds300")
    victim = BSDS300(root, "test").files[5]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=victim.name):
        BSDS300(tmp_path, "test")
    BSDS300(tmp_path, "train")  # the other split is still complete
    (root / "iids_train.txt").write_text("12003\nabc\n")
    with pytest.raises(ValueError, match="line 2"):
        BSDS300(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        BSDS300(tmp_path, "training")


# ----------------------------------------------------------------------------------------------------------------
# Image folders


@pytest.fixture
def image_dir(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    grey = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    Image.fromarray(grey).save(folder / "b_grey.png")
    Image.fromarray(_rgb(10, 14, 0)).save(folder / "a_colour.PNG")
    Image.fromarray(_rgb(9, 7, 1)).save(folder / "c.jpg")
    Image.fromarray(grey).save(folder / "d.tiff")
    Image.fromarray(_rgb(5, 6, 2)).save(folder / "e.bmp")
    (folder / "notes.txt").write_text("not an image")
    (folder / "._c.jpg").write_bytes(b"resource fork")
    (folder / "sub").mkdir()
    return folder


def test_image_folder_formats(image_dir):
    data = ImageFolder(image_dir)
    assert [f.name for f in data.files] == ["a_colour.PNG", "b_grey.png", "c.jpg", "d.tiff", "e.bmp"]
    shapes = [tuple(data[k].shape) for k in range(len(data))]
    assert shapes == [(1, 10, 14), (1, 20, 30), (1, 9, 7), (1, 20, 30), (1, 5, 6)]
    assert all(data[k].dtype == torch.uint8 for k in range(len(data)))
    assert torch.equal(data[1][0], torch.arange(600).reshape(20, 30).to(torch.uint8))
    assert torch.equal(data[3], data[1])  # lossless TIFF and PNG agree
    rgb = _rgb(10, 14, 0)
    colour = ImageFolder(image_dir, grey=False)
    assert torch.equal(colour[0], torch.from_numpy(rgb).permute(2, 0, 1))
    assert colour[1].shape == (3, 20, 30)  # grey files become 3 equal channels
    luma = np.array(Image.fromarray(rgb).convert("L"))
    assert torch.equal(data[0][0], torch.from_numpy(luma))
    info = data.describe()
    assert info["num_images"] == 5 and info["num_pixels"] == 140 + 600 + 63 + 600 + 30
    assert info["sizes"][2] == [9, 7]


def test_image_folder_glob_and_extensions(image_dir):
    assert [f.name for f in ImageFolder(str(image_dir / "*.png")).files] == ["b_grey.png"]
    assert [f.name for f in ImageFolder(str(image_dir / "[cd]*")).files] == ["c.jpg", "d.tiff"]
    assert [f.name for f in ImageFolder(image_dir, extensions=(".JPG",)).files] == ["c.jpg"]
    with pytest.raises(FileNotFoundError, match="matching"):
        ImageFolder(str(image_dir / "*.gif"))


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files") as info:
        ImageFolder(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(info.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing useful")
    with pytest.raises(ValueError, match="broken.png"):
        ImageFolder(bad)[0]
    Image.fromarray(_rgb(40, 40, 3)).save(bad / "cut.jpg")
    data = (bad / "cut.jpg").read_bytes()
    (bad / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.jpg"):
        ImageFolder(bad)[1]
    Image.fromarray(np.full((4, 4), 1000, dtype=np.uint16)).save(bad / "deep.png")
    with pytest.raises(ValueError, match="deep.png.*8 bits"):
        ImageFolder(bad)[2]


# ----------------------------------------------------------------------------------------------------------------
# Textures


def test_texture_tiles():
    image = torch.arange(2 * 7 * 10).reshape(2, 7, 10)
    tiles = texture_tiles(image, 3)
    assert tiles.shape == (2 * 3, 2, 3, 3)
    assert torch.equal(tiles[0], image[:, :3, :3])
    assert torch.equal(tiles[2], image[:, :3, 6:9])  # raster order
    assert torch.equal(tiles[4], image[:, 3:6, 3:6])
    assert texture_tiles(image, 8).shape == (0, 2, 8, 8)
    with pytest.raises(ValueError):
        texture_tiles(image[0], 3)


@pytest.fixture
def brodatz_dir(tmp_path) -> Path:
    folder = tmp_path / "brodatz_usc_sipi"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, size, black in (("1.1.01", 32, 2), ("1.1.11", 32, 5), ("1.2.01", 32, 2), ("1.3.01", 48, 0)):
        image = rng.integers(1, 256, (size, size), dtype=np.uint8)
        image[size - black:] = 0
        image[3, :] = 0  # a black row inside the image stays
        Image.fromarray(image).save(folder / f"{name}.tiff")
    return folder


def test_brodatz_crops_black_rows(brodatz_dir):
    data = Brodatz(brodatz_dir.parent)
    assert data.names == ["1.1.01", "1.1.11"]
    assert [tuple(data[k].shape) for k in range(2)] == [(1, 30, 32), (1, 27, 32)]
    with Image.open(brodatz_dir / "1.1.11.tiff") as img:
        assert torch.equal(data[1][0], torch.from_numpy(np.array(img))[:27])
    info = data.describe()
    assert info["cropped_rows"] == [2, 5] and info["num_pixels"] == (30 + 27) * 32
    both = Brodatz(brodatz_dir, scans=("1.2", "1.3"))
    assert both.names == ["1.2.01", "1.3.01"] and both[1].shape == (1, 48, 48)
    assert Brodatz(brodatz_dir, plates=["1.3.01", "1.1.01"]).names == ["1.3.01", "1.1.01"]
    assert Brodatz(brodatz_dir, crop=False)[0].shape == (1, 32, 32)
    with pytest.raises(ValueError, match="1.1.99"):
        Brodatz(brodatz_dir, plates=["1.1.99"])
    with pytest.raises(FileNotFoundError, match="scans"):
        Brodatz(brodatz_dir, scans=("1.5",))


# ----------------------------------------------------------------------------------------------------------------
# CIFAR-10


def _cifar_dir(tmp_path: Path, per_batch: int = 4) -> tuple[Path, torch.Tensor, list[int]]:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6 * per_batch, 3, 32, 32), generator=gen, dtype=torch.uint8)
    labels = [k % 10 for k in range(6 * per_batch)]
    for k, name in enumerate([*cifar10.CIFAR10_TRAIN_FILES, "test_batch"]):
        part = slice(k * per_batch, (k + 1) * per_batch)
        write_cifar10_batch(folder / name, images[part], labels[part])
    return folder, images, labels


def test_cifar10_round_trip(tmp_path):
    folder, images, labels = _cifar_dir(tmp_path)
    train, test = CIFAR10(tmp_path, train=True), CIFAR10(folder, train=False)
    assert (len(train), len(test)) == (20, 4)
    image, label = train[7]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and label == labels[7]
    assert torch.equal(train.images, images[:20]) and torch.equal(test.images, images[20:])
    # the format: rows of 3072 bytes, red plane first, each plane row-major
    with open(folder / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    assert raw[b"data"].shape == (4, 3072) and raw[b"data"].dtype == np.uint8
    assert np.array_equal(raw[b"data"][1, :32], images[21, 0, 0].numpy())
    assert np.array_equal(raw[b"data"][1, 1024:1056], images[21, 1, 0].numpy())
    assert raw[b"labels"] == labels[20:]
    assert train.describe()["num_pixels"] == 20 * 32 * 32


def test_cifar10_reads_numpy1_pickles(tmp_path):
    """The original files name numpy.core.multiarray (NumPy 1); NumPy 2 writes numpy._core."""
    path = tmp_path / "batch"
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    write_cifar10_batch(path, images, [3, 4])
    data = path.read_bytes().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.write_bytes(data)
    assert torch.equal(read_cifar10_batch(path)[0], images)


def test_cifar10_errors(tmp_path):
    folder, _, _ = _cifar_dir(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        CIFAR10(folder, train=True)
    bad = tmp_path / "bad"
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(ValueError, match=r"bad.*\[N, 3072\]"):
        read_cifar10_batch(bad)
    bad.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match="expected a dict"):
        read_cifar10_batch(bad)
    bad.write_bytes(b"this is not a pickle")
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        read_cifar10_batch(bad)
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}))
    with pytest.raises(ValueError, match="0..9"):
        read_cifar10_batch(bad)
    bad.write_bytes(b"cos\nsystem\n(S'true'\ntR.")  # a pickle that would run a shell command
    with pytest.raises(ValueError, match="refusing to load global os.system"):
        read_cifar10_batch(bad)
    with pytest.raises(ValueError, match="uint8"):
        write_cifar10_batch(tmp_path / "x", np.zeros((1, 3, 32, 32), np.float32), [0])


# ----------------------------------------------------------------------------------------------------------------
# Dead leaves


def test_dead_leaves_dataset():
    train, test = DeadLeaves("train"), DeadLeaves("test")
    assert (len(train), len(test)) == (900, 100)
    assert (train.seed, test.seed) == (DEAD_LEAVES_TRAIN_SEED, DEAD_LEAVES_TEST_SEED)
    small = DeadLeaves("train", size=24, num_images=3)
    reference = torch.from_numpy(dead_leaves_images(3, 24, seed=DEAD_LEAVES_TRAIN_SEED))
    assert torch.equal(torch.stack([small[k] for k in range(3)]), reference[:, None])
    assert small[2].dtype == torch.uint8 and torch.equal(small[-1], small[2])
    assert torch.equal(DeadLeaves("train", 24, 3)[1], small[1])  # deterministic
    assert not torch.equal(DeadLeaves("test", 24, 3)[1], small[1])
    cached = DeadLeaves("test", 24, 2, cache=True)
    assert cached[0] is cached[0]
    assert test.describe()["num_pixels"] == 100 * 256 * 256
    with pytest.raises(IndexError):
        small[3]
    with pytest.raises(ValueError, match="split"):
        DeadLeaves("val")


# ----------------------------------------------------------------------------------------------------------------
# BSDS300 patches


def test_random_patches_equal_counts_and_origins():
    gen = torch.Generator().manual_seed(5)
    images = [torch.randint(0, 256, (1, h, w), generator=gen, dtype=torch.uint8) for h, w in ((9, 12), (20, 8))]
    images.append(torch.randint(0, 256, (1, 11, 11), generator=gen, dtype=torch.uint8))
    values, origins = random_patches(images, 301, torch.Generator().manual_seed(1))
    assert values.shape == (301, 64) and values.dtype == torch.uint8
    assert torch.bincount(origins[:, 0]).tolist() == [101, 100, 100]  # equal up to one, the first images get more
    for (k, top, left), patch in zip(origins.tolist(), values, strict=True):
        assert torch.equal(patch, images[k][0, top : top + 8, left : left + 8].reshape(64))
    assert origins[:, 1].max() <= 12 and origins[:, 2].max() <= 4  # the whole patch lies inside the image
    assert origins[:100, 0].unique().numel() == 3  # shuffled, not grouped by image
    again = random_patches(images, 301, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], values) and torch.equal(again[1], origins)
    assert random_patches(images, 2, torch.Generator())[0].shape == (2, 64)  # fewer patches than images
    with pytest.raises(ValueError, match="smaller"):
        random_patches([torch.zeros(1, 7, 9, dtype=torch.uint8)], 1, torch.Generator())


def test_patches_generated_cached_and_regenerated(fake_root, tmp_path):
    cache = tmp_path / "cache"
    first = BSDS300Patches(fake_root, "val", cache_dir=cache, num_patches=60)
    assert first.generated and len(first) == 60 and first.patches.shape == (60, 64)
    assert first.patches.dtype == torch.float32 and first[0].shape == (64,)
    assert 0 <= float(first.patches.min()) and float(first.patches.max()) < 1
    assert first.cache_file == cache / "bsds300_patches" / "val_60.npy"
    # x = (v + u) / 256: the integer part is the pixel of the patch the seeded generator picks
    gen = torch.Generator().manual_seed(patches63.BSDS300_PATCH_SEEDS["val"])
    source = BSDS300(fake_root, "val")
    values, origins = random_patches([source[k] for k in range(len(source))], 60, gen)
    assert torch.equal(torch.floor(first.patches * 256).to(torch.uint8), values)
    assert torch.bincount(origins[:, 0]).tolist() == [3] * 20  # equal numbers per image
    meta = json.loads(first.meta_file.read_text())
    assert meta["version"] == patches63.PATCHES_FORMAT_VERSION and meta["ids"] == source.ids
    assert meta["num_patches"] == 60 and meta["seed"] == patches63.BSDS300_PATCH_SEEDS["val"]

    stamp = first.cache_file.stat().st_mtime_ns
    time.sleep(0.01)
    hit = BSDS300Patches(fake_root, "val", cache_dir=cache, num_patches=60)
    assert not hit.generated and torch.equal(hit.patches, first.patches)
    assert first.cache_file.stat().st_mtime_ns == stamp
    assert BSDS300Patches.cache_status(fake_root, "val", cache, 60) == (first.cache_file, "fresh")
    assert BSDS300Patches.cache_status(fake_root, "val", cache, 61)[1] == "absent"

    meta["version"] = -1  # an older format: stale
    first.meta_file.write_text(json.dumps(meta))
    assert BSDS300Patches.cache_status(fake_root, "val", cache, 60)[1] == "stale"
    stale = BSDS300Patches(fake_root, "val", cache_dir=cache, num_patches=60)
    assert stale.generated and torch.equal(stale.patches, first.patches)  # deterministic
    assert first.cache_file.stat().st_mtime_ns != stamp
    assert not BSDS300Patches(fake_root, "val", cache_dir=cache, num_patches=60).generated
    assert BSDS300Patches(fake_root, "val", cache_dir=cache, regenerate=True, num_patches=60).generated
    assert not list((cache / "bsds300_patches").glob(".*"))  # no temporary files left behind


def test_patches_stale_when_images_change(fake_root, tmp_path):
    root = _copy_tree(fake_root / "bsds300", tmp_path / "bsds300")
    cache = tmp_path / "cache"
    first = BSDS300Patches(root, "test", cache_dir=cache, num_patches=200)
    assert first.generated
    victim = BSDS300(root, "test").files[0]
    Image.fromarray(_rgb(16, 12, 99)).save(victim, quality=95)
    second = BSDS300Patches(root, "test", cache_dir=cache, num_patches=200)
    assert second.generated and not torch.equal(second.patches, first.patches)
    other = BSDS300Patches(root, "train", cache_dir=cache, num_patches=360)
    assert other.generated and other.describe()["num_images"] == 180
    assert other.describe()["num_pixels"] == 360 * 64


def test_patches_default_cache_dir(fake_root, tmp_path, monkeypatch):
    monkeypatch.setenv("RIDE_CACHE", str(tmp_path / "envcache"))
    patches = BSDS300Patches(fake_root, "val", num_patches=20)
    assert patches.cache_file.parent == tmp_path / "envcache" / "bsds300_patches"
    with pytest.raises(ValueError, match="split"):
        BSDS300Patches(fake_root, "train+val", num_patches=20)


# ----------------------------------------------------------------------------------------------------------------
# `ride data` commands


def _run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ride")
    cli_data.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *argv])
    return args.func(args)


def test_tiles64_counts():
    counts = cli_data.tiles64({"321x481": 2, "481x321": 1, "63x500": 4}, nb_size=5)
    assert counts == {"tiles": 3 * 35, "per_tile": [62, 60], "counted_pixels": 105 * 62 * 60}
    assert cli_data.tiles64({"64x64": 1}, nb_size=9)["per_tile"] == [60, 56]


def test_stats_command(fake_root, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RIDE_DATA", raising=False)
    assert _run_cli("stats", "--data-root", str(fake_root), "--cache-dir", str(tmp_path), "bsds300", "brodatz",
                    "bsds300-patches") == 0
    out = capsys.readouterr().out
    assert "bsds300 val" in out and "20 images" in out and "3,840 px" in out
    assert "tiles64: 0 tiles" in out  # 16x12 images hold no 64x64 tile
    assert "brodatz 1.1" in out and "not available" in out and re.search(r"brodatz 1.2 +not available \(as above", out)
    assert "not cached (absent)" in out
    assert _run_cli("stats", "deadleaves", "bsds300", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    entries = {e["dataset"]: e for e in report["datasets"]}
    assert entries["deadleaves train"]["tiles64"]["counted_pixels"] == 900 * 16 * 62 * 60
    assert not entries["bsds300 test"]["available"] and "RIDE_DATA" in entries["bsds300 test"]["reason"]
    assert _run_cli("stats", "imagenet") == 2
    assert "unknown data sets" in capsys.readouterr().err


def _fake_archive(fake_root: Path, path: Path, with_iids: bool = True, drop: int = 0) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tree = fake_root / "bsds300"
        files = sorted(tree.glob("images/*/*.jpg"))
        for file in files[drop:]:
            tar.add(file, arcname=f"BSDS300/{file.relative_to(tree).as_posix()}")
        if with_iids:
            for name in ("iids_train.txt", "iids_test.txt"):
                tar.add(tree / name, arcname=f"BSDS300/{name}")
        info = tarfile.TarInfo("BSDS300/README")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    return path


@pytest.fixture
def allow_fake_archives(fake_root, monkeypatch):
    """Size limits and the official digest replaced by ones the fake archive meets."""
    monkeypatch.setattr(download, "BSDS300_ARCHIVE_MIN_BYTES", 0)
    monkeypatch.setattr(download, "BSDS300_IMAGES_SHA256", download.bsds300_images_sha256(fake_root / "bsds300"))


def test_extract_bsds300(fake_root, tmp_path, allow_fake_archives):
    archive = _fake_archive(fake_root, tmp_path / "a.tgz", with_iids=False)
    info = download.extract_bsds300(archive, tmp_path / "root")
    assert (info["num_train"], info["num_test"], info["iids_from_archive"]) == (200, 100, [])
    for split in ("train", "val", "test"):
        assert BSDS300(tmp_path / "root", split).ids == BSDS300(fake_root, split).ids
    folder = tmp_path / "root" / "bsds300"
    assert (folder / "ARCHIVE.sha256").read_text().split()[0] == info["archive_sha256"]
    assert sorted(p.name for p in folder.iterdir()) == ["ARCHIVE.sha256", "iids_test.txt", "iids_train.txt", "images"]
    with pytest.raises(FileExistsError):
        download.extract_bsds300(archive, tmp_path / "root")
    with_iids = _fake_archive(fake_root, tmp_path / "b.tgz")
    info = download.extract_bsds300(with_iids, tmp_path / "root", overwrite=True)
    assert info["iids_from_archive"] == ["test", "train"]
    assert (folder / "iids_train.txt").read_text() == (fake_root / "bsds300" / "iids_train.txt").read_text()
    assert not [p for p in (tmp_path / "root").iterdir() if p.name != "bsds300"]  # no temporary folders left


def test_extract_bsds300_rejects_bad_archives(fake_root, tmp_path, allow_fake_archives, monkeypatch):
    short = _fake_archive(fake_root, tmp_path / "short.tgz", drop=1)
    with pytest.raises(ValueError, match="expected 100 images in images/test/, found 99"):
        download.extract_bsds300(short, tmp_path / "root")
    assert not (tmp_path / "root" / "bsds300").exists()
    (tmp_path / "junk.tgz").write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match="not a readable .tgz"):
        download.extract_bsds300(tmp_path / "junk.tgz", tmp_path / "root")
    monkeypatch.setattr(download, "BSDS300_IMAGES_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="differ from the official"):
        download.extract_bsds300(_fake_archive(fake_root, tmp_path / "ok.tgz"), tmp_path / "root")
    monkeypatch.setattr(download, "BSDS300_ARCHIVE_MIN_BYTES", 10**9)
    with pytest.raises(ValueError, match="bytes, expected"):
        download.extract_bsds300(tmp_path / "ok.tgz", tmp_path / "root")


class _FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, length: int | None = None) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data) if length is None else length)}


def test_download_command(fake_root, tmp_path, allow_fake_archives, monkeypatch, capsys):
    data = _fake_archive(fake_root, tmp_path / "a.tgz").read_bytes()
    urls = []

    def fake_urlopen(url, timeout):
        urls.append(url)
        return _FakeResponse(data)

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    root = tmp_path / "root"
    assert _run_cli("download", "bsds300", "--data-root", str(root)) == 0
    out = capsys.readouterr().out
    assert urls == [download.BSDS300_URL]
    import hashlib

    assert f"archive sha256 {hashlib.sha256(data).hexdigest()}" in out and "200 training and 100 test" in out
    assert len(BSDS300(root, "train")) == 180 and not (root / "BSDS300-images.tgz").exists()
    assert _run_cli("download", "bsds300", "--data-root", str(root)) == 0
    assert "already" in capsys.readouterr().out
    # a local archive, no network
    assert _run_cli("download", "bsds300", "--data-root", str(tmp_path / "r2"), "--archive",
                    str(tmp_path / "a.tgz")) == 0
    assert len(BSDS300(tmp_path / "r2", "test")) == 100


def test_download_errors(tmp_path, monkeypatch, capsys):
    import urllib.error

    def offline(url, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    assert _run_cli("download", "bsds300", "--data-root", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "cannot download https://" in err and "Name or service not known" in err and "--archive" in err
    assert not list(tmp_path.glob("BSDS300*"))
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: _FakeResponse(b"abc", length=10))
    assert _run_cli("download", "bsds300", "--data-root", str(tmp_path)) == 1
    assert "got 3 of 10 bytes" in capsys.readouterr().err
    monkeypatch.delenv("RIDE_DATA", raising=False)
    assert _run_cli("download", "bsds300") == 2
    assert "RIDE_DATA" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# The real data (CI sets RIDE_DATA)


@pytest.fixture
def real_root() -> Path:
    root = os.environ.get("RIDE_DATA")
    if not root:
        pytest.skip("RIDE_DATA is not set: the real BSDS300 and Brodatz checks did not run")
    return Path(root)


def test_real_bsds300(real_root):
    sizes = {}
    for split, count in (("train", 180), ("val", 20), ("test", 100)):
        data = BSDS300(real_root, split)
        assert len(data) == count and data.ids == sorted(data.ids, key=int)
        sizes[split] = data.describe()["size_counts"]
        assert set(sizes[split]) <= {"321x481", "481x321"}
    assert BSDS300(real_root, "train").ids[:2] == ["2092", "8049"]
    assert sizes["test"] == {"321x481": 77, "481x321": 23}
    image = BSDS300(real_root, "test")[0]
    assert image.dtype == torch.uint8 and image.shape == (1, 321, 481)
    assert download.bsds300_images_sha256(resolve_root(real_root, "bsds300")) == download.BSDS300_IMAGES_SHA256


def test_real_brodatz(real_root):
    data = Brodatz(real_root)
    assert len(data) == 13 and data.names[10] == "1.1.11"
    shapes = [tuple(data[k].shape) for k in range(13)]
    assert shapes == [(1, 510, 512)] * 10 + [(1, 486, 512)] + [(1, 510, 512)] * 2
    assert all(int(data[k][0, -1].max()) > 0 for k in range(13))  # no black row left
    assert [tuple(t.shape) for t in Brodatz(real_root, plates=["1.3.01"])] == [(1, 1024, 1024)]


# ----------------------------------------------------------------------------------------------------------------
# Wikimedia photographs and USC-SIPI aerials (generated stand-ins; the real folders when RIDE_DATA holds them)


def _photo_root(root: Path) -> Path:
    """A data root with 49 small RGB wikipedia_photos PNGs and 37 aerial PNGs (3.2.25 grey), as the real folders
    are named."""
    wiki = root / "wikipedia_photos"
    wiki.mkdir(parents=True)
    for k in range(1, 50):
        Image.fromarray(_rgb(10 + k % 3, 14, seed=k)).save(wiki / f"{k:03d}.png")
    (wiki / "SOURCES.md").write_text("not an image\n")
    aerials = root / "usc_sipi_aerials"
    aerials.mkdir()
    names = [f"2.1.{k:02d}" for k in range(1, 13)] + [f"2.2.{k:02d}" for k in range(1, 25)]
    for k, name in enumerate(names):
        Image.fromarray(_rgb(12, 12, seed=100 + k)).save(aerials / f"{name}.png")
    Image.fromarray(_rgb(12, 12, seed=99)[..., 0]).save(aerials / "3.2.25.png")
    return root


def test_every_kth_split_is_a_partition():
    names = [f"{k:03d}" for k in range(1, 50)]
    train, val = (photos.every_kth_split(names, s, 5, 3) for s in ("train", "val"))
    assert [names[k] for k in val] == ["003", "008", "013", "018", "023", "028", "033", "038", "043", "048"]
    assert sorted(train + val) == list(range(49)) and not set(train) & set(val)
    assert photos.every_kth_split(names, "all", 5, 3) == list(range(49))
    with pytest.raises(ValueError, match="split must be one of"):
        photos.every_kth_split(names, "test", 5, 3)


def test_wikipedia_photos_and_aerials_on_stand_ins(tmp_path):
    root = _photo_root(tmp_path)
    train, val = photos.WikipediaPhotos(root, "train"), photos.WikipediaPhotos(root, "val")
    assert (len(train), len(val)) == (39, 10) and val.ids[:2] == ["003", "008"]
    assert train[0].dtype == torch.uint8 and train[0].shape == (1, 11, 14)  # luma of 001.png
    expected = torch.from_numpy(np.array(Image.open(root / "wikipedia_photos" / "001.png").convert("L")))
    assert torch.equal(train[0][0], expected)
    assert photos.WikipediaPhotos(root / "wikipedia_photos", "val", grey=False)[0].shape == (3, 10, 14)
    assert photos.WikipediaPhotos(root, "all").describe()["num_images"] == 49
    aerial_train, aerial_val = photos.USCSIPIAerials(root, "train"), photos.USCSIPIAerials(root, "val")
    assert (len(aerial_train), len(aerial_val)) == (30, 7) and aerial_val.ids[0] == "2.1.03"
    grey_as_rgb = photos.USCSIPIAerials(root, "all", grey=False)[36]  # 3.2.25 is grey: equal channels
    assert grey_as_rgb.shape == (3, 12, 12) and torch.equal(grey_as_rgb[0], grey_as_rgb[2])


def test_photo_data_sets_missing_say_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="wikipedia_photos"):
        photos.WikipediaPhotos(tmp_path, "train")
    (tmp_path / "usc_sipi_aerials").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no image"):
        photos.USCSIPIAerials(tmp_path, "train")


@pytest.mark.skipif(not os.environ.get("RIDE_DATA"), reason="RIDE_DATA not set: real photograph folders not found")
def test_real_photo_folders():
    wiki = photos.WikipediaPhotos(None, "val")
    assert len(wiki) == 10 and len(photos.WikipediaPhotos(None, "train")) == 39
    assert wiki.describe()["num_pixels"] > 5_000_000
    assert len(photos.USCSIPIAerials(None, "train")) == 30
