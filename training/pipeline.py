#!/usr/bin/env python3
"""The seed's pipeline commands, kept: ``python training/pipeline.py status|generate|export|run``.

Each is the ``hoof-train`` subcommand of the same name (see ``hoof-train --help``).
"""

import sys

from openhoof_router.cli.train import main

SEED_COMMANDS = {"status", "generate", "export", "run", "eval", "train"}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in SEED_COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
