"""The training batches' order: shuffled every epoch, optionally by length, and resumable part way through."""
from __future__ import annotations

import itertools
import math
from typing import Iterator, Optional

import torch
from torch.utils.data import Sampler


class ShuffledBatchSampler(Sampler[list[int]]):
    """Random batches, every epoch in a new order, that can resume an epoch part way through.

    Each epoch draws one seed from torch's global generator (so ``seed_everything`` fixes the order) and makes
    its order from that seed alone: without ``bucket_by_length`` exactly what ``shuffle=True`` gives
    (``RandomSampler``'s permutation cut into batches); with it, batches of similar length: shuffle, sort pools
    of 50 batches by length, shuffle the batches (fewer padding steps carry a mask of 0).

    :meth:`resume` makes the next epoch use a given seed and skip the batches already trained on: a checkpoint
    written part way through an epoch holds the seed (:attr:`epoch_seed`) and the count.
    """

    POOL_BATCHES = 50

    def __init__(self, lengths: list[int], batch_size: int, bucket_by_length: bool) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.bucket_by_length = bucket_by_length
        self.epoch_seed: Optional[int] = None
        self._resume: Optional[tuple[int, int]] = None

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def resume(self, epoch_seed: int, batches_done: int) -> None:
        """The next epoch: the order of ``epoch_seed``, without its first ``batches_done`` batches."""
        self._resume = (epoch_seed, batches_done)

    def __iter__(self) -> Iterator[list[int]]:
        seed, skip = self._resume or (int(torch.empty((), dtype=torch.int64).random_().item()), 0)
        self._resume, self.epoch_seed = None, seed
        yield from itertools.islice(self._batches(torch.Generator().manual_seed(seed)), skip, None)

    def _batches(self, generator: torch.Generator) -> Iterator[list[int]]:
        """The epoch's batches; with ``bucket_by_length`` a pool is sorted when its first batch is due, so the
        first batch of a million sentences does not wait for all of them to be sorted."""
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        size = self.batch_size
        if not self.bucket_by_length:
            yield from (order[i:i + size] for i in range(0, len(order), size))
            return
        pool = size * self.POOL_BATCHES  # every pool but the last holds POOL_BATCHES batches
        count = sum(math.ceil(len(order[start:start + pool]) / size) for start in range(0, len(order), pool))
        sorted_pools: dict[int, list[int]] = {}
        for index in torch.randperm(count, generator=generator).tolist():
            number, batch = divmod(index, self.POOL_BATCHES)
            if number not in sorted_pools:
                sorted_pools[number] = sorted(order[number * pool:(number + 1) * pool], key=self.lengths.__getitem__)
            yield sorted_pools[number][batch * size:(batch + 1) * size]
