"""``ImageToTokenMapper``: CLIP image features of several layers -> K token embeddings of one text encoder.

StellarNet's "dynamic textual inversion" (Stellar paper, §5): the masked subject photo is encoded
by a CLIP vision encoder; the CLS token of each of L chosen layers is taken, and one mapper per
SDXL text encoder turns them into K word embeddings that replace the placeholder S*.

Architecture (per mapper)::

    x = concat(LN(cls_1), …, LN(cls_L))                     # (B, L·d_vision)
    h = LeakyReLU(LN(W_1 x)) ; h = LeakyReLU(LN(W_2 h))     # mapper_layers hidden layers of width 1024
    e = reshape(W_out h, (B, K, d_text))                    # K token embeddings

Choices (the paper gives only "MLP, hidden 1024, 2 hidden layers, LayerNorm + LeakyReLU"): the L
layer features are concatenated (so K need not equal L), each normalised by a parameter-free
LayerNorm first because CLIP's intermediate hidden states differ in scale by orders of magnitude;
LeakyReLU slope 0.01 (PyTorch's default).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class ImageToTokenMapper(ModelMixin, ConfigMixin):
    """Map (B, L, d_vision) layer features to (B, K, d_text) token embeddings.

    Args:
        vision_dim: width of the CLIP vision hidden states (1024 for ViT-L/14).
        num_layers_in: L, how many layers' features come in.
        token_dim: width of the target text encoder's token embeddings (768 / 1280 for SDXL).
        num_tokens: K.
        hidden_dim, hidden_layers: the MLP.
    """

    @register_to_config
    def __init__(
        self,
        vision_dim: int = 1024,
        num_layers_in: int = 5,
        token_dim: int = 768,
        num_tokens: int = 5,
        hidden_dim: int = 1024,
        hidden_layers: int = 2,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = vision_dim * num_layers_in
        for _ in range(hidden_layers):
            layers += [nn.Linear(width, hidden_dim), nn.LayerNorm(hidden_dim), nn.LeakyReLU()]
            width = hidden_dim
        self.mlp = nn.Sequential(*layers)
        self.proj = nn.Linear(width, num_tokens * token_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` (B, L, vision_dim) -> token embeddings (B, K, token_dim)."""
        if features.ndim != 3 or features.shape[1:] != (self.config.num_layers_in, self.config.vision_dim):
            raise ValueError(
                f"expected features of shape (B, {self.config.num_layers_in}, {self.config.vision_dim}), got {tuple(features.shape)}"
            )
        x = nn.functional.layer_norm(features, features.shape[-1:])
        x = x.flatten(1).to(self.proj.weight.dtype)
        out = self.proj(self.mlp(x))
        return out.view(features.shape[0], self.config.num_tokens, self.config.token_dim)
