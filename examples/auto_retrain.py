"""Auto-retraining from cron: what the loop has to learn from, and the line to schedule.

``hoof-train --auto --min-examples 200`` retrains only when the next run would train on at
least 200 examples the model in place has not seen (``retrain_due``: logged decisions that
feedback confirmed or corrected, plus teacher-written examples, after duplicates and
held-out messages are dropped; tool runs alone vouch for nothing), checks the new adapter
against the held-out set, and promotes it; running routers hot-reload it.
Add to ``crontab -e`` (every night at 03:17; adjust paths)::

    17 3 * * * cd /srv/agent && OPENHOOF_HOME=/srv/openhoof .venv/bin/hoof-train --auto --min-examples 200 >> /srv/openhoof/train.log 2>&1

    python examples/auto_retrain.py [--data-dir DIR] [--stand-in]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

from openhoof_router import Paths, read_joined
from openhoof_router.learning.data.assemble import retrain_due
from openhoof_router.serving.selection import serve

MIN_EXAMPLES = 200


def cron_line(paths: Paths, min_examples: int = MIN_EXAMPLES, data_dir: str | None = None) -> str:
    train = shutil.which("hoof-train") or str(Path(sys.executable).with_name("hoof-train"))
    env = f"OPENHOOF_HOME={paths.home}" + (f" OPENHOOF_DATA_DIR={paths.data_dir}" if data_dir else "")
    return (f"17 3 * * * {env} {train} --auto --min-examples {min_examples} "
            f">> {paths.home / 'train.log'} 2>&1")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--min-examples", type=int, default=MIN_EXAMPLES)
    p.add_argument("--stand-in", action="store_true",
                   help="accepted like every example's (CI runs them all with it); this one calls no reasoner")
    args = p.parse_args()
    paths = Paths.resolve(data_dir=args.data_dir)
    joined = read_joined(paths)
    status = Counter(item.status for item in joined.items)
    usable = sum(item.label is not None for item in joined.items)
    due, reason = retrain_due(paths, args.min_examples)  # the rule hoof-train --auto applies
    serving = serve(paths=paths, load=False, warn=False)  # what a router would serve, files checked
    print(json.dumps({
        "decisions": len(joined.items), "by_status": dict(status), "usable_for_training": usable,
        "skipped_lines": joined.skipped_decisions + joined.skipped_outcomes,
        "orphan_outcomes": len(joined.orphans), "serving": serving.describe(),
        "refused": serving.refused,
        "would_train": due, "why": reason,
    }, indent=2))
    print("\ncron line (crontab -e):\n" + cron_line(paths, args.min_examples, args.data_dir))


if __name__ == "__main__":
    main()
