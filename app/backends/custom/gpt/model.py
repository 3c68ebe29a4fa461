"""Decoder-only GPT in the shape of nanoGPT, with a per-request KV cache (gpt-fast style)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int  # tokenizer size, special and label tokens included
    block_size: int = 256  # longest sequence (prompt + reply) the model attends over
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 256  # residual stream width; must divide by n_head
    dropout: float = 0.0  # used in training only
    bias: bool = True  # biases in Linear and LayerNorm layers
    tie_embeddings: bool = True  # the output layer shares the token embedding's weights

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class KVCache:
    """Keys and values of one layer for up to `batch` sequences (rows), preallocated."""

    def __init__(self, batch: int, n_head: int, max_len: int, head_dim: int, dtype: torch.dtype):
        shape = (batch, n_head, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype)
        self.v = torch.zeros(shape, dtype=dtype)

    def update(self, input_pos: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (B, nh, T, hs) into rows 0..B-1 at input_pos: (T,) shared by the rows,
        or (B, T) per row. Returns those rows up to the last position written (B, nh, S, hs)."""
        B = k.size(0)
        if input_pos.dim() == 1:
            self.k[:B, :, input_pos] = k
            self.v[:B, :, input_pos] = v
        else:  # each row at its own positions: rows (B, 1) and input_pos (B, T) broadcast
            rows = torch.arange(B).unsqueeze(1)
            self.k[rows, :, input_pos] = k.transpose(1, 2)  # indexed as (B, T, nh, hs)
            self.v[rows, :, input_pos] = v.transpose(1, 2)
        end = int(input_pos.max()) + 1
        return self.k[:B, :, :end], self.v[:B, :, :end]

    def copy_row(self, dst: int, src: KVCache, src_row: int, length: int) -> None:
        """Copy the first `length` positions of src's row into row dst of this cache."""
        self.k[dst, :, :length] = src.k[src_row, :, :length]
        self.v[dst, :, :length] = src.v[src_row, :, :length]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout

    def forward(self, x: Tensor, input_pos: Tensor | None, cache: KVCache | None) -> Tensor:
        B, T, C = x.size()
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        mask: Tensor | None = None
        causal = True
        if cache is not None and input_pos is not None:
            k, v = cache.update(input_pos, k, v)  # (B, nh, S, hs), S = last position + 1
            causal = False
            if input_pos.dim() == 2 and B > 1:  # rows at different positions
                mask = (torch.arange(k.size(2)) <= input_pos.unsqueeze(-1)).unsqueeze(1)
                # (B, 1, T, S): each query sees the keys of its own row up to its position
            elif T > 1:  # prefill after earlier tokens: each query sees keys up to its position
                mask = torch.arange(k.size(2)) <= input_pos.reshape(T, 1)  # (T, S)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=causal and T > 1,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))  # type: ignore[no-any-return]


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # type: ignore[no-any-return]


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, input_pos: Tensor | None, cache: KVCache | None) -> Tensor:
        x = x + self.attn(self.ln_1(x), input_pos, cache)
        return x + self.mlp(self.ln_2(x))  # type: ignore[no-any-return]


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight  # weight tying (GPT-2, nanoGPT)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # scaled init of residual projections (GPT-2)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, batch: int = 1) -> list[KVCache]:
        """One empty KV cache per layer for a new decoding sequence."""
        c = self.config
        dtype = self.wte.weight.dtype
        return [
            KVCache(batch, c.n_head, c.block_size, c.n_embd // c.n_head, dtype)
            for _ in range(c.n_layer)
        ]

    def forward(
        self,
        idx: Tensor,
        input_pos: Tensor | None = None,
        caches: list[KVCache] | None = None,
    ) -> Tensor:
        """Logits (B, T, vocab) for tokens idx (B, T) at positions input_pos: (T,) for every
        row, or (B, T) when rows of a batch are at different positions.

        Without caches the whole sequence is attended causally from position 0 (training and
        uncached decoding); with caches each call appends its keys and values at input_pos.
        """
        return self.lm_head(self.features(idx, input_pos, caches))  # type: ignore[no-any-return]

    def features(
        self,
        idx: Tensor,
        input_pos: Tensor | None = None,
        caches: list[KVCache] | None = None,
    ) -> Tensor:
        """The final hidden states (B, T, C) that `lm_head` turns into logits: training takes
        the logits of the positions it scores only."""
        _, T = idx.size()
        if input_pos is None:
            input_pos = torch.arange(T)
        assert int(input_pos.max()) < self.config.block_size, "sequence longer than block_size"
        x = self.drop(self.wte(idx) + self.wpe(input_pos))  # (B, T, C)
        for i, block in enumerate(self.h):
            x = block(x, input_pos if caches else None, caches[i] if caches else None)
        return self.ln_f(x)  # type: ignore[no-any-return]
