#!/usr/bin/env python3
"""The seed's training entry point, kept: ``python training/train_tool_router.py [flags]``.

Same flags as the seed (--epochs 3 --lr 2e-4 --batch-size 4 --lora-rank 16 --lora-alpha 32
--format chat --backend auto|cpu|cuda|mlx --auto --min-examples N). It runs the full
pipeline of ``hoof-train``: assemble data, train, export GGUF, evaluate, promote.
"""

import sys

from openhoof_router.cli.train import main

if __name__ == "__main__":
    args = sys.argv[1:]
    # `--auto` is a group option of hoof-train; everything else belongs to `run`.
    sys.exit(main(args if "--auto" in args else ["run", *args]))
