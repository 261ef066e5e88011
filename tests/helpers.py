"""Tiny hand-made batches and models for unit tests (no data files needed)."""
from dataclasses import dataclass

import torch

import models


@dataclass
class FakeBatch:
    tokens: torch.Tensor
    lengths: torch.Tensor

    @property
    def size(self):
        return self.tokens.shape[0]

    @property
    def num_words(self):
        return int((self.lengths - 1).sum())


def random_batch(batch=8, steps=6, vocab=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, vocab, (batch, steps), generator=g)
    tokens[:, 0] = 1
    lengths = torch.randint(3, steps + 1, (batch,), generator=g)
    for i, n in enumerate(lengths):
        tokens[i, n - 1] = 2
        tokens[i, n:] = 0
    return FakeBatch(tokens, lengths)


def tiny_arch(vocab=12, nz=3):
    return models.Architecture(vocab_size=vocab, emb_dim=8, enc_hidden=10, dec_hidden=10, nz=nz,
                               dropout_in=0.0, dropout_out=0.0, init="default")
