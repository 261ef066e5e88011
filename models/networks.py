"""The LSTM encoder and decoder of the text-VAE protocol (He et al. 2019, Sec. 5).

Encoder: embedding -> 1-layer LSTM -> last hidden state -> linear (no bias) to
the mean and log-variance of a diagonal Gaussian. Decoder: 1-layer LSTM whose
input at every step is the previous word's embedding concatenated with z; z
also sets the initial cell state through a linear map (initial hidden =
tanh(cell)); dropout on the input embeddings and on the outputs; linear (no
bias) to the vocabulary. Sizes, initialisation and numeric precision come from
the profile.

Precision ``bf16`` runs the parts that ``bf16_parts`` names for the device in
bfloat16 (bfloat16 matmuls with float32 accumulation): under ``torch.autocast``,
except the LSTMs on CUDA, which ``run_lstm`` casts explicitly because autocast would
run them in float16 there (``bf16_parts`` says why). Weights, their gradients and the
optimiser state stay float32, and every part hands float32 on (``widened``), so
log-likelihoods, KLs, logsumexps and MI accumulate in float32. ``float32_matmul_policy``
makes float32 mean IEEE float32 on CUDA (no TF32), for fp32 runs and the float32
parts of bf16 runs alike.
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .gaussian import DiagonalGaussian


@dataclass(frozen=True)
class Architecture:
    """Network sizes; every field is a profile value."""

    vocab_size: int
    emb_dim: int = 512
    enc_hidden: int = 1024
    dec_hidden: int = 1024
    nz: int = 32
    dropout_in: float = 0.5
    dropout_out: float = 0.5
    init: str = "uniform"  # "uniform": He et al.'s U(-0.01, 0.01) / embeddings U(-0.1, 0.1); "default": PyTorch's
    init_range: float = 0.01
    emb_init_range: float = 0.1
    precision: str = "fp32"  # "fp32" or "bf16" (bf16_parts)
    lineage: str = "he2019"  # the protocol's code lineage; "shen2021" changes some encoders' init (models/base.py)


PRECISIONS = ("fp32", "bf16")
PARTS = ("encoder_lstm", "decoder_lstm", "output")  # output: the output projection; its log-softmax stays float32
CUDNN_BF16_RNN = 91300  # cuDNN's RNN takes bfloat16 from 9.13 on (pytorch/pytorch#164411)
LSTM_CAST_DEVICES = frozenset({"cuda"})  # where the LSTMs run in bfloat16 by explicit cast, not autocast (bf16_parts)


@functools.lru_cache(maxsize=None)
def bf16_parts(device_type: str) -> frozenset[str]:
    """The parts that bfloat16 makes faster on a device of ``device_type`` ("cpu", "cuda"): what
    ``precision = "bf16"`` runs in bfloat16.

    CPU: every part where the CPU has AMX; measured forward and backward by ``python -m
    benchmarks.perf`` at the quick and the paper sizes (docs/performance.md, "bfloat16"). Without
    AMX, none (not measured; bfloat16 may be emulated there). CUDA: the output layer on tensor
    cores, and the LSTMs where cuDNN's RNN takes bfloat16 (not measured in this project yet).

    How: on CPU every part runs under ``torch.autocast(dtype=bfloat16)``; on CUDA the output layer
    too (a Linear, which autocast runs in the dtype it is given), but the LSTMs by an explicit
    cast (``run_lstm``: bfloat16 copies of the weights, input, h and c, autocast off), never
    through autocast. Autocast's CUDA kernel for cuDNN RNNs (``_cudnn_rnn_cast_reflatten`` in
    aten/src/ATen/cudnn/AutocastRNN.cpp) casts input, weights, h and c to float16 whatever dtype
    autocast was given, so an autocast LSTM would run in float16 and hand float16 on.
    """
    if device_type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        return frozenset(PARTS) if amx else frozenset()
    if device_type == "cuda":
        rnn = torch.backends.cudnn.is_available() and torch.backends.cudnn.version() >= CUDNN_BF16_RNN
        return frozenset(PARTS) if rnn else frozenset({"output"})
    return frozenset()


REDUCED_FLOATS = (torch.bfloat16, torch.float16)


def widened(tensor: torch.Tensor) -> torch.Tensor:
    """A part's reduced-precision output (bfloat16, or float16 from an autocast cuDNN RNN) as float32;
    anything else as it is (float64 test models stay float64)."""
    return tensor.float() if tensor.dtype in REDUCED_FLOATS else tensor


def in_precision(arch: Architecture, part: str, device: torch.device):
    """The autocast context of one part: bfloat16 where the profile asks for it and the device gains
    (the LSTMs on ``LSTM_CAST_DEVICES`` are cast by ``run_lstm`` instead)."""
    if arch.precision != "bf16" or part not in bf16_parts(device.type):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def run_lstm(lstm: nn.LSTM, inputs: torch.Tensor, state, arch: Architecture, part: str):
    """``lstm(inputs, state)`` in the part's precision (``bf16_parts``); outputs and (h, c) come out widened."""
    device = inputs.device
    if device.type in LSTM_CAST_DEVICES and arch.precision == "bf16" and part in bf16_parts(device.type):
        outputs, state = lstm_in_bfloat16(lstm, inputs, state)
    else:
        with in_precision(arch, part, device):
            outputs, state = lstm(inputs, state)
    return widened(outputs), tuple(widened(s) for s in state)


# cuDNN warns when an RNN's weights are not one flat buffer, as bfloat16 copies are not; it then
# copies them into one per call, which is what autocast's cuDNN RNN wrapper does too.
NOT_FLAT_WARNING = "RNN module weights are not part of single contiguous chunk of memory"


def lstm_in_bfloat16(lstm: nn.LSTM, inputs: torch.Tensor, state=None):
    """``lstm(inputs, state)`` computed in bfloat16 by explicit casts, with autocast off around it.

    The weights are bfloat16 copies of the float32 parameters (``functional_call``), so their
    gradients flow back through the cast to the float32 master weights; input, h and c are cast
    too. Returns bfloat16 outputs and (h, c).
    """
    weights = {name: p.to(torch.bfloat16) for name, p in lstm.named_parameters()}
    inputs = inputs.to(torch.bfloat16)
    state = None if state is None else tuple(s.to(torch.bfloat16) for s in state)
    with torch.autocast(inputs.device.type, enabled=False), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NOT_FLAT_WARNING)
        return functional_call(lstm, weights, (inputs, state))


def float32_matmul_policy(device) -> str:
    """Make float32 mean IEEE float32 on ``device``; returns the setting, for the run's record.

    CUDA: TF32 off for cuBLAS matmuls and for cuDNN (RNNs and convolutions), whose TF32 PyTorch
    leaves on by default (``torch.backends.cudnn.rnn.fp32_precision`` is "tf32" out of the box), so
    an fp32 run's LSTMs, and the float32 parts of a bf16 run, would compute with TF32's 10-bit
    mantissa on Ampere and later. Set through the ``fp32_precision`` API; the ``allow_tf32`` flags
    are its legacy form, and torch refuses to read them once the two are mixed. Elsewhere nothing
    is set: CPU float32 matmuls are IEEE unless the process asked oneDNN otherwise (returned as is).
    """
    if torch.device(device).type != "cuda":
        setting = torch.backends.mkldnn.matmul.fp32_precision
        return "ieee" if setting == "none" else setting
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.rnn.fp32_precision = "ieee"
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    return "ieee"


def initialise(module: nn.Module, embedding: nn.Embedding, arch: Architecture) -> None:
    if arch.init == "uniform":
        for p in module.parameters():
            nn.init.uniform_(p, -arch.init_range, arch.init_range)
        nn.init.uniform_(embedding.weight, -arch.emb_init_range, arch.emb_init_range)


def last_states(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The output at each sequence's last real position ([B, T, H] -> [B, H]).

    Padding comes after the real tokens, so for a unidirectional LSTM this
    equals the final hidden state of the unpadded sequence.
    """
    return outputs[torch.arange(outputs.shape[0], device=outputs.device), lengths - 1]


LOGITS_BLOCK_BYTES = 2**20  # a block of logits that stays in a CPU core's L2 cache


def logits_block_rows(hidden_size: int, vocab_size: int) -> int | None:
    """Rows per block of evaluation logits on CPU, or None where one-shot logits are faster.

    A 1 MB block (at least 128 rows) stays in cache, but every block reads the
    V x H output weights again: 4H / rows bytes per logit, against the ~8 bytes
    per logit that writing and re-reading one-shot logits costs. Blocks pay when
    rows >= H / 2: at the quick sizes (H 128, V 2000) the IW-NLL's output layer and
    softmax ran 2-2.7x faster in 131-row blocks; at the paper's (H 1024, V 20k)
    128-row blocks were 15-30% slower than one shot (2 threads).
    """
    rows = max(128, LOGITS_BLOCK_BYTES // (4 * vocab_size))
    return rows if 2 * rows >= hidden_size else None


class LSTMEncoder(nn.Module):
    def __init__(self, arch: Architecture):
        super().__init__()
        self.embed = nn.Embedding(arch.vocab_size, arch.emb_dim)
        self.lstm = nn.LSTM(arch.emb_dim, arch.enc_hidden, batch_first=True)
        self.to_gaussian = nn.Linear(arch.enc_hidden, 2 * arch.nz, bias=False)
        self.arch = arch
        initialise(self, self.embed, arch)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> DiagonalGaussian:
        outputs, _ = run_lstm(self.lstm, self.embed(tokens), None, self.arch, "encoder_lstm")
        mu, logvar = self.to_gaussian(last_states(outputs, lengths)).chunk(2, dim=-1)
        return DiagonalGaussian(mu, logvar)


class LSTMDecoder(nn.Module):
    """p(x | z) of an LSTM language model conditioned on z (nz = 0: a plain LSTM-LM)."""

    def __init__(self, arch: Architecture, nz: int | None = None):
        super().__init__()
        self.nz = arch.nz if nz is None else nz
        self.embed = nn.Embedding(arch.vocab_size, arch.emb_dim)
        self.dropout_in = nn.Dropout(arch.dropout_in)
        self.dropout_out = nn.Dropout(arch.dropout_out)
        self.lstm = nn.LSTM(arch.emb_dim + self.nz, arch.dec_hidden, batch_first=True)
        self.z_to_cell = nn.Linear(self.nz, arch.dec_hidden, bias=False) if self.nz else None
        self.output = nn.Linear(arch.dec_hidden, arch.vocab_size, bias=False)
        self.arch = arch
        initialise(self, self.embed, arch)

    def initial_state(self, z: torch.Tensor | None, batch: int):
        if z is None:
            return None
        cell = self.z_to_cell(z).unsqueeze(0)
        return torch.tanh(cell), cell

    def hidden_states(self, inputs: torch.Tensor, z: torch.Tensor | None, state=None):
        """Run the LSTM over ``inputs`` [N, T]; z is [N, nz] or None. Returns (outputs, state)."""
        emb = self.dropout_in(self.embed(inputs))
        if z is not None:
            emb = torch.cat([emb, z.unsqueeze(1).expand(-1, inputs.shape[1], -1)], dim=-1)
        if state is None:
            state = self.initial_state(z, inputs.shape[0])
        outputs, state = run_lstm(self.lstm, emb, state, self.arch, "decoder_lstm")
        return self.dropout_out(outputs), state

    def project(self, hidden: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """Output layer: hidden states [N, T, H] (z [N, nz]) -> logits [N, T, V]."""
        return self.output(hidden)

    def logits_float32(self, hidden: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """``project`` in the profile's precision, as float32 logits (the log-softmax's input)."""
        with in_precision(self.arch, "output", hidden.device):
            logits = self.project(hidden, z)
        return widened(logits)

    def logits(self, inputs: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        return self.logits_float32(self.hidden_states(inputs, z)[0], z)

    def log_likelihood(self, tokens: torch.Tensor, lengths: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """log p(x | z) summed over the predicted words (every token after <s>).

        tokens [B, T] (padded), lengths [B]; z [B, K, nz] (K samples per
        document) or None. Returns [B, K] (K = 1 without z).
        """
        batch, steps = tokens.shape
        samples = 1 if z is None else z.shape[1]
        inputs = tokens[:, :-1].repeat_interleave(samples, dim=0)
        targets = tokens[:, 1:].repeat_interleave(samples, dim=0)
        flat_z = None if z is None else z.reshape(batch * samples, -1)
        mask = torch.arange(steps - 1, device=tokens.device).unsqueeze(0) < (lengths - 1).repeat_interleave(samples).unsqueeze(1)
        hidden = self.hidden_states(inputs, flat_z)[0]
        rows = logits_block_rows(hidden.shape[-1], self.output.out_features)
        if rows and not torch.is_grad_enabled() and hidden.device.type == "cpu":
            return -self.nll_in_blocks(hidden, targets, mask, flat_z, rows).view(batch, samples)
        logits = self.logits_float32(hidden, flat_z)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
        return -(nll.view(batch * samples, steps - 1) * mask).sum(-1).view(batch, samples)

    def nll_in_blocks(self, hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                      z: torch.Tensor | None, rows: int) -> torch.Tensor:
        """Summed NLL per sequence [N] from the real (unpadded) positions, ``rows`` rows of logits at a time.

        Evaluation on CPU at small sizes, where the [N, T, V] logits of a whole IW
        chunk make the output layer and its softmax memory-bound (see
        ``logits_block_rows``). Equal to the one-shot computation up to float
        rounding (tests/test_perf.py).
        """
        steps = hidden.shape[1]
        positions = mask.reshape(-1).nonzero().squeeze(1)
        sequence = positions // steps
        hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions).unsqueeze(1)
        targets = targets.reshape(-1).index_select(0, positions)
        z = None if z is None else z.index_select(0, sequence)
        nll = torch.cat([
            F.cross_entropy(self.logits_float32(hidden[s:s + rows], None if z is None else z[s:s + rows]).squeeze(1),
                            targets[s:s + rows], reduction="none")
            for s in range(0, len(positions), rows)])
        return torch.zeros(mask.shape[0], dtype=nll.dtype, device=nll.device).index_add_(0, sequence, nll)

    @torch.no_grad()
    def generate(self, z: torch.Tensor | None, bos: int, eos: int, max_len: int, greedy: bool = False,
                 n: int | None = None) -> list[list[int]]:
        """Sample (or greedily decode) sentences given z [N, nz]; returns token ids without <s>/</s>."""
        count = z.shape[0] if z is not None else n
        device = self.output.weight.device
        token = torch.full((count, 1), bos, dtype=torch.long, device=device)
        state, finished, out = None, torch.zeros(count, dtype=torch.bool, device=device), []
        for _ in range(max_len):
            hidden, state = self.hidden_states(token, z, state)
            logits = self.logits_float32(hidden, z)[:, -1]
            token = logits.argmax(-1, keepdim=True) if greedy else torch.multinomial(logits.softmax(-1), 1)
            out.append(token.squeeze(1))
            finished |= token.squeeze(1) == eos
            if finished.all():
                break
        ids = torch.stack(out, 1).tolist()
        return [seq[: seq.index(eos)] if eos in seq else seq for seq in ids]
