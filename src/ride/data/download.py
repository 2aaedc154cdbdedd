"""Fetching and verifying the official BSDS300 archive (`ride data download bsds300`).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from .bsds300 import BSDS300_NUM_TEST, BSDS300_NUM_TRAIN, read_ids
from .common import file_sha256

BSDS300_URL = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/BSDS300-images.tgz"
#: Digest of the 300 official images (see `bsds300_images_sha256`), from a byte-identical copy of the release.
BSDS300_IMAGES_SHA256 = "373d1ffde559b00ac79bdbff2b47886874b323400652723c762cf2b665fe7c69"
#: Plausible size of the official archive (its JPEGs alone are 22.2 MB): catches error pages and truncation.
BSDS300_ARCHIVE_MIN_BYTES = 15_000_000
BSDS300_ARCHIVE_MAX_BYTES = 100_000_000

_ARCHIVE_IMAGE = re.compile(r"^(\d+)\.jpg$")


def extract_bsds300(archive: str | os.PathLike, root: str | os.PathLike, *, overwrite: bool = False,
                    verify_images: bool = True) -> dict[str, Any]:
    """Verify the BSDS300 images archive (BSDS300-images.tgz) and extract it to `root`/bsds300 as images/train,
    images/test, iids_train.txt and iids_test.txt (built from the file names when the archive lacks them).

    Checks: archive size within [BSDS300_ARCHIVE_MIN_BYTES, BSDS300_ARCHIVE_MAX_BYTES]; a gzip tar; exactly 200
    training and 100 test JPEGs named by numeric id, disjoint; iid files, if present, listing the same ids; the
    images' digest equal to BSDS300_IMAGES_SHA256 (if `verify_images`). Extraction goes to a temporary
    folder that is renamed into place only when every check passed. The archive's sha256 is written to
    bsds300/ARCHIVE.sha256. Returns {"folder", "archive_sha256", "archive_bytes", "num_train", "num_test",
    "iids_from_archive", "images_sha256"}. Raises ValueError on a bad archive, FileExistsError when the folder
    exists and not `overwrite`.
    """
    archive, root = Path(archive), Path(root)
    size = archive.stat().st_size
    if not BSDS300_ARCHIVE_MIN_BYTES <= size <= BSDS300_ARCHIVE_MAX_BYTES:
        raise ValueError(f"{archive} has {size} bytes, expected {BSDS300_ARCHIVE_MIN_BYTES}.."
                         f"{BSDS300_ARCHIVE_MAX_BYTES} for the BSDS300 images archive (an error page or a truncated "
                         "download?)")
    dest = root / "bsds300"
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} already exists; remove it or overwrite it (--force)")
    archive_sha256 = file_sha256(archive)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bsds300-", dir=root))
    try:
        found, iids = _extract_members(archive, tmp)
        for part, expected in (("train", BSDS300_NUM_TRAIN), ("test", BSDS300_NUM_TEST)):
            if len(found[part]) != expected:
                raise ValueError(f"{archive}: expected {expected} images in images/{part}/, found {len(found[part])}")
        overlap = set(found["train"]) & set(found["test"])
        if overlap:
            raise ValueError(f"{archive}: ids in both images/train and images/test: {sorted(overlap, key=int)[:5]}")
        for part in ("train", "test"):
            if part in iids and sorted(iids[part], key=int) != sorted(found[part], key=int):
                raise ValueError(f"{archive}: iids_{part}.txt does not list the ids of images/{part}/")
            if part not in iids:  # build the list from the images, in numeric order
                (tmp / f"iids_{part}.txt").write_text("".join(f"{i}\n" for i in sorted(found[part], key=int)))
        images_sha256 = bsds300_images_sha256(tmp)
        if verify_images and images_sha256 != BSDS300_IMAGES_SHA256:
            raise ValueError(f"{archive}: the images differ from the official BSDS300 release (digest "
                             f"{images_sha256}, expected {BSDS300_IMAGES_SHA256})")
        (tmp / "ARCHIVE.sha256").write_text(f"{archive_sha256}  {archive.name}\n")
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=".bsds300-old-", dir=root))
            os.replace(dest, old / "bsds300")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {"folder": str(dest), "archive_sha256": archive_sha256, "archive_bytes": size,
            "num_train": len(found["train"]), "num_test": len(found["test"]),
            "iids_from_archive": sorted(iids), "images_sha256": images_sha256}


def _extract_members(archive: Path, dest: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Copy .../images/{train,test}/<id>.jpg and .../iids_{train,test}.txt out of the tar archive into `dest`
    (output paths are built from the matched names, never from the archive's paths). Returns the image ids and
    the iid lists found, per split."""
    found: dict[str, list[str]] = {"train": [], "test": []}
    iids: dict[str, list[str]] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = PurePosixPath(member.name).parts
                match = _ARCHIVE_IMAGE.match(parts[-1])
                if match and len(parts) >= 3 and parts[-3] == "images" and parts[-2] in found:
                    part = parts[-2]
                    if match.group(1) in found[part]:
                        raise ValueError(f"{archive}: image {parts[-1]} appears twice in images/{part}/")
                    found[part].append(match.group(1))
                    out = dest / "images" / part / parts[-1]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(out, "wb") as dst:  # type: ignore[union-attr]
                        shutil.copyfileobj(src, dst)
                elif parts[-1] in ("iids_train.txt", "iids_test.txt"):
                    part = parts[-1][5:-4]
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    (dest / parts[-1]).write_bytes(data)
                    iids[part] = read_ids(dest / parts[-1])
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{archive} is not a readable .tgz archive: {err}") from None
    return found, iids


def download_bsds300(root: str | os.PathLike, url: str = BSDS300_URL, *, overwrite: bool = False,
                     keep_archive: bool = False, timeout: float = 60.0,
                     progress: Callable[[int, int | None], None] | None = None) -> dict[str, Any]:
    """Download the official BSDS300 images archive into `root`, verify and extract it (`extract_bsds300`).

    `progress(bytes_done, bytes_total_or_None)` is called as the download proceeds. The archive is deleted after
    a successful extraction unless `keep_archive`. Returns `extract_bsds300`'s dict plus "url". Raises
    ConnectionError (an OSError) with the URL and the reason when the download fails.
    """
    root = Path(root)
    if (root / "bsds300").exists() and not overwrite:
        raise FileExistsError(f"{root / 'bsds300'} already exists; remove it or overwrite it (--force)")
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "BSDS300-images.tgz"
    part = root / "BSDS300-images.tgz.part"
    hint = ("Check the internet connection (or the proxy in https_proxy), or download the file with a browser and "
            "run `ride data download bsds300 --archive FILE`")
    with open(part, "wb") as out:  # a local error here (permissions, disk) is not a network error
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                headers = getattr(response, "headers", None)
                length = headers.get("Content-Length") if headers is not None else None
                total = int(length) if length and str(length).isdigit() else None
                done = 0
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:  # OSError: sockets, timeouts
            out.close()
            part.unlink(missing_ok=True)
            raise ConnectionError(f"cannot download {url}: {getattr(err, 'reason', err)}. {hint}") from None
    if total is not None and done != total:
        part.unlink(missing_ok=True)
        raise ConnectionError(f"download of {url} was cut short: got {done} of {total} bytes. {hint}")
    os.replace(part, archive)
    try:
        info = extract_bsds300(archive, root, overwrite=overwrite)
    finally:
        if not keep_archive:
            archive.unlink(missing_ok=True)
    return {**info, "url": url}


def bsds300_images_sha256(folder: str | os.PathLike) -> str:
    """Digest of a BSDS300 folder's images: sha256 of the lines "<sha256 of file>  images/<split>/<id>.jpg\\n"
    over all images/*/*.jpg sorted by that relative path (the lines of a `sha256sum` manifest)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for rel in sorted(p.relative_to(folder).as_posix() for p in folder.glob("images/*/*.jpg")):
        digest.update(f"{file_sha256(folder / rel)}  {rel}\n".encode())
    return digest.hexdigest()
