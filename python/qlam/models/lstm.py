"""The LSTM baseline: a per-token encoder, a stacked ``nn.LSTM`` (cuDNN on GPU), pooling and a head."""
from __future__ import annotations

from torch import Tensor, nn


class LSTMClassifier(nn.Module):
    def __init__(self, cfg, in_channels: int, n_classes: int):
        super().__init__()
        self.encoder = nn.Linear(in_channels, cfg.d_model)
        self.lstm = nn.LSTM(cfg.d_model, cfg.d_model, num_layers=cfg.n_layers, batch_first=True,
                            dropout=cfg.dropout if cfg.n_layers > 1 else 0.0)
        self.pooling = cfg.pooling
        self.head = nn.Linear(cfg.d_model, n_classes)
        with_bias = [p for name, p in self.lstm.named_parameters() if name.startswith("bias_ih")]
        for bias in with_bias:  # forget-gate bias 1 (Jozefowicz et al. 2015)
            h = cfg.d_model
            bias.data[h:2 * h].fill_(1.0)

    def features(self, x: Tensor) -> Tensor:
        return self.lstm(self.encoder(x))[0]

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x)
        return self.head(h.mean(dim=1) if self.pooling == "mean" else h[:, -1])


def build_lstm(cfg, in_channels: int, n_classes: int, seq_len: int) -> LSTMClassifier:
    return LSTMClassifier(cfg, in_channels, n_classes)
