"""Synthetic text with a known latent structure, after He et al. 2019 (ICLR, "Lagging inference
networks and posterior collapse in variational autoencoders", Sec. 6.1 and their
``synthetic-data/`` generator): a 2-d latent ``z`` is drawn from a Gaussian mixture, and an LSTM
language model with random weights, conditioned on ``z``, samples a fixed-length sentence.

Our choices (He et al. use 4 components at (+-2, +-2) with std 1; the Scale-VAE latent-space
experiment forms mini-batches per component, so we want more, well separated components):

* 16 components on a 4 x 4 grid with spacing 2 (means in {-3, -1, 1, 3}^2), std 0.5: neighbouring
  means are 4 std apart, so 93% of draws lie closer to their own mean than to any other.
  Components are equiprobable; the component index is the label of the sentence.
* Decoder: vocabulary 1000, embedding and hidden size 50. ``z`` enters three ways: a linear map of
  ``z`` gives the initial cell state (hidden = tanh(cell)), ``z`` is concatenated to every input,
  and a linear map of ``z`` is added to the output logits. Weights are uniform(-1, 1), except the
  z-to-logits map, uniform(-3, 3) (He et al. use the same two scales), so sentences depend clearly on
  their component (measured with the defaults: a naive-Bayes classifier on word counts, trained on
  the train split, finds the component of 77% of test sentences, chance being 6%; without the
  z-to-logits map it is 40%; see ``tests/test_data.py``).
* The first input is a start symbol (its own embedding), so the first word depends on ``z`` too;
  each word is sampled from softmax(logits) at temperature 1.

Everything runs in float64 with one ``torch.Generator`` per purpose (weights, and each split),
seeded from the configuration's seed, so the files are identical byte for byte given the seed.
Tokens are written as ``w0`` ... ``w999``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.data.cache import cached_splits
from benchmarks.data.documents import Document


@dataclass(frozen=True)
class SyntheticConfig:
    seed: int = 0
    grid: int = 4  # components on a grid x grid lattice
    spacing: float = 2.0  # distance between neighbouring means
    std: float = 0.5  # per-dimension std of each component
    vocab_size: int = 1000
    embed_dim: int = 50
    hidden_dim: int = 50
    length: int = 10  # tokens per sentence (without <s>/</s>)
    weight_scale: float = 1.0  # LSTM, embedding and output weights ~ uniform(-s, s)
    z_logit_scale: float = 3.0  # z-to-logits weights ~ uniform(-s, s)
    train: int = 20_000
    valid: int = 2_000
    test: int = 2_000

    @property
    def num_components(self) -> int:
        return self.grid * self.grid

    def key(self) -> str:
        """Folder name in the cache: every parameter, so a different generator never reuses files."""
        c = self
        return (f"synthetic-v1-grid{c.grid}-sp{c.spacing:g}-std{c.std:g}-V{c.vocab_size}-e{c.embed_dim}"
                f"-h{c.hidden_dim}-L{c.length}-ws{c.weight_scale:g}-zs{c.z_logit_scale:g}"
                f"-n{c.train}.{c.valid}.{c.test}-seed{c.seed}")


def _generator(seed: int, purpose: str) -> torch.Generator:
    digest = hashlib.blake2b(f"{seed}/{purpose}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


class RandomLSTMLanguageModel:
    """The data-generating model: a z-conditioned LSTM LM with random weights (no training)."""

    def __init__(self, config: SyntheticConfig):
        self.config = c = config
        g = _generator(c.seed, "weights")

        def uniform(*shape: int, scale: float = c.weight_scale) -> torch.Tensor:
            return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * scale

        h, nz = c.hidden_dim, 2
        self.embed = uniform(c.vocab_size + 1, c.embed_dim)  # last row: start symbol
        self.w_input = uniform(4 * h, c.embed_dim + nz)
        self.w_hidden = uniform(4 * h, h)
        self.bias = uniform(4 * h)
        self.w_cell = uniform(h, nz)  # z -> initial cell state
        self.w_out = uniform(c.vocab_size, h)
        self.w_z_out = uniform(c.vocab_size, nz, scale=c.z_logit_scale)
        axis = (torch.arange(c.grid, dtype=torch.float64) - (c.grid - 1) / 2) * c.spacing
        self.means = torch.cartesian_prod(axis, axis)  # [K, 2]; component k = (row k // grid, col k % grid)

    def sample(self, n: int, generator: torch.Generator, chunk: int = 4096):
        """``n`` sentences: (token ids [n, length], components [n], latents [n, 2])."""
        c = self.config
        components = torch.randint(self.means.shape[0], (n,), generator=generator)
        z = self.means[components] + c.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)
        uniforms = torch.rand(n, c.length, generator=generator, dtype=torch.float64)
        ids = torch.cat([self._decode(z[i: i + chunk], uniforms[i: i + chunk]) for i in range(0, n, chunk)])
        return ids, components, z

    def _decode(self, z: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        cell = z @ self.w_cell.T
        hidden = torch.tanh(cell)
        word = torch.full((z.shape[0],), self.config.vocab_size)  # start symbol
        z_logits = z @ self.w_z_out.T
        uniforms = uniforms.T.contiguous()  # [length, n]
        out = []
        for step in range(self.config.length):
            x = torch.cat([self.embed[word], z], dim=1)
            gates = x @ self.w_input.T + hidden @ self.w_hidden.T + self.bias
            i, f, g, o = gates.chunk(4, dim=1)
            cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
            hidden = torch.sigmoid(o) * torch.tanh(cell)
            probs = torch.softmax(hidden @ self.w_out.T + z_logits, dim=1)
            # inverse-CDF sampling with pre-drawn uniforms: no hidden RNG state inside torch ops
            word = torch.searchsorted(probs.cumsum(dim=1), uniforms[step].unsqueeze(1)).squeeze(1)
            word = word.clamp_(max=self.config.vocab_size - 1)
            out.append(word)
        return torch.stack(out, dim=1)


def generate(config: SyntheticConfig) -> dict[str, list[Document]]:
    """Train/valid/test sentences; each split has its own random stream (changing one split's
    size leaves the others unchanged)."""
    model = RandomLSTMLanguageModel(config)
    splits = {}
    for split in ("train", "valid", "test"):
        ids, components, _ = model.sample(getattr(config, split), _generator(config.seed, split))
        splits[split] = [Document(tuple(f"w{i}" for i in row), label)
                         for row, label in zip(ids.tolist(), components.tolist())]
    return splits


def prepare_files(cache_dir: Path, config: SyntheticConfig) -> dict[str, Path]:
    """{split: path} of the synthetic corpus in the cache (generated on first use)."""
    return cached_splits(Path(cache_dir), config.key(), [], lambda: generate(config))


__all__ = ["SyntheticConfig", "RandomLSTMLanguageModel", "generate", "prepare_files"]
