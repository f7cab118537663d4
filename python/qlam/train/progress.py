"""Progress display on the main process: a tqdm bar per epoch (loss, accuracy, tokens/s) and summaries."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


class Progress:
    def __init__(self, bars: bool, seq_len: int, verbose: bool = True):
        self.enabled, self.verbose, self.seq_len, self.bar = bars, verbose, seq_len, None

    def start(self, epoch: int, epochs: int, total: int, initial: int) -> None:
        if self.enabled:
            self.bar = tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                            dynamic_ncols=True)

    def update(self, sums, lr: float) -> None:
        if self.bar is None:
            return
        loss_sum, correct, count, seconds = sums
        self.bar.update(1)
        if self.bar.n % 5 == 0 or self.bar.n == self.bar.total:
            self.bar.set_postfix(loss=f"{loss_sum / count:.4f}", acc=f"{correct / count:.3f}",
                                 tok_s=f"{count * self.seq_len / max(seconds, 1e-9):.3g}", lr=f"{lr:.2e}",
                                 refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def summary(self, row: dict) -> None:
        val = "" if row["val_acc"] is None else f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}"
        self.message(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}{val}  "
                     f"({row['epoch_time_s']:.1f}s, {row['tokens_per_s']:.3g} tokens/s)")

    def message(self, text: str) -> None:
        if self.verbose:
            tqdm.write(text)
            sys.stdout.flush()
