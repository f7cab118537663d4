"""``python -m qlam.train CONFIG [KEY=VALUE ...] [--resume]`` (the same as ``qlam-train``)."""
import sys

from .cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
