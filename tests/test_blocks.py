"""knit.blocks: a body read in big reused blocks, its MD5 computed by a second thread."""

import hashlib
import io
import os

from knit.blocks import Blocks, HashPool


class Trickle:
    """A body that comes in pieces of ``piece`` bytes, without ``readinto`` (as a plain read())."""

    def __init__(self, data: bytes, piece: int):
        self.data, self.piece, self.at = data, piece, 0

    def read(self, size: int) -> bytes:
        chunk = self.data[self.at : self.at + min(size, self.piece)]
        self.at += len(chunk)
        return chunk


def test_a_block_is_handed_out_again_only_once_it_is_hashed():
    pool, expected = HashPool(size=4096, count=2), hashlib.md5()
    for n in range(200):  # each block is overwritten as soon as take() gives it back
        block = pool.take()
        block[:] = bytes([n % 256]) * len(block)
        expected.update(block)
        pool.hash(block, len(block))
    assert pool.hexdigest() == expected.hexdigest()


def test_a_body_in_small_pieces_reads_whole_and_hashes_whole():
    data = os.urandom(3 * (1 << 20) + 123)
    body = Blocks(Trickle(data, 7000))
    got = [body.read(512), bytes(body.read1(100_000))]
    while piece := body.read1(1 << 20):
        got.append(bytes(piece))
    assert b"".join(got) == data
    assert body.hexdigest() == hashlib.md5(data).hexdigest()


def test_read_is_exact_across_blocks_and_short_only_at_the_end():
    data = os.urandom(5000)
    body = Blocks(io.BytesIO(data), HashPool(size=1024, count=2))
    assert body.read(3000) == data[:3000]  # three blocks
    assert body.read(3000) == data[3000:]
    assert body.read(10) == b"" and bytes(body.read1(10)) == b""
    assert body.hexdigest() == hashlib.md5(data).hexdigest()


def test_an_empty_body_has_the_md5_of_nothing():
    body = Blocks(io.BytesIO(b""))
    assert body.read(512) == b""
    assert body.hexdigest() == hashlib.md5(b"").hexdigest()


def test_a_small_body_takes_one_block_and_a_big_one_at_most_the_pool():
    small, big = HashPool(count=3), HashPool(size=1024, count=3)
    Blocks(io.BytesIO(b"x" * 5000), small).read(5000)
    body = Blocks(io.BytesIO(os.urandom(100_000)), big)
    while body.read1(4096):
        pass
    assert small.left == 2 and big.left == 0
    small.close()
    body.close()
