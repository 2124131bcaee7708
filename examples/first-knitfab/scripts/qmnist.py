"""QMNIST files: IDX images (``images.gz``) and IDX labels (``labels.gz``) in a dataset folder.

Images are ``N x 28 x 28`` unsigned bytes; labels are QMNIST's ``N x 8`` big-endian integers,
of which the first column is the digit (plain MNIST ``N`` byte labels are read too).
"""

import gzip
import struct
from pathlib import Path

import torch

UBYTE, INT32 = 0x08, 0x0C


def read_idx(path: Path) -> torch.Tensor:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    _, kind, ndim = struct.unpack(">HBB", raw[:4])
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = raw[4 + 4 * ndim :]
    if kind == UBYTE:
        return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)
    if kind == INT32:
        return torch.tensor(struct.unpack(f">{len(body) // 4}i", body), dtype=torch.int64).reshape(dims)
    raise ValueError(f"{path}: IDX type {kind:#x} is not supported")


def load(folder: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images as floats in [0, 1], N x 1 x 28 x 28; digits, N)"""
    images = read_idx(Path(folder) / "images.gz")
    labels = read_idx(Path(folder) / "labels.gz")
    digits = labels[:, 0] if labels.dim() == 2 else labels.long()
    print(f"data shape:{tuple(images.shape)}, type: {images.dtype}")
    print(f"label shape:{tuple(digits.shape)}, type: {digits.dtype}")
    return images.float().div(255).unsqueeze(1), digits


def write_idx(path: Path, tensor: torch.Tensor, kind: int) -> None:
    header = struct.pack(">HBB", 0, kind, tensor.dim()) + struct.pack(f">{tensor.dim()}I", *tensor.shape)
    if kind == UBYTE:
        body = bytes(tensor.to(torch.uint8).flatten().tolist())
    else:
        values = tensor.flatten().tolist()
        body = struct.pack(f">{len(values)}i", *values)
    with gzip.open(path, "wb") as f:
        f.write(header + body)
