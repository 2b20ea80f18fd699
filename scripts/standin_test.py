"""Write a stand-in for the withheld Art–Office test file, to exercise the test path at its real size.

The real test split (1,000 users, 2,000 lines) is withheld. This writes a file of the same format and
size made of *valid* records with new user ids 8000–8999 (the test id range; valid users are cycled, so
423 of them appear twice under two ids). No training record enters it, so nothing leaks from training;
its metrics are valid metrics (partly counted twice), **not** test results — the file only shows that
``data.test_file=PATH --split test`` scores 2,000 records and how long that takes.

    python scripts/standin_test.py --valid ../shared/data/art-office/valid_F2.txt --out runs/standin_test.txt
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger("standin_test")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--valid", required=True, help="valid_F2.txt (two lines per user)")
    ap.add_argument("--out", required=True, help="the stand-in file to write")
    ap.add_argument("--users", type=int, default=1000, help="users in the stand-in (two lines each)")
    ap.add_argument("--first-id", type=int, default=8000, help="user id of the first stand-in user")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    by_user: dict[str, list[str]] = {}
    for n, line in enumerate(Path(args.valid).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        user, sep, rest = line.partition("\t")
        if not sep:
            raise SystemExit(f"{args.valid}:{n}: no tab after the user id")
        by_user.setdefault(user, []).append(rest)
    if not by_user:
        raise SystemExit(f"{args.valid}: no records")
    users = list(by_user)
    out = []
    for i in range(args.users):
        for rest in by_user[users[i % len(users)]]:
            out.append(f"{args.first_id + i}\t{rest}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(out) + "\n", encoding="utf-8")
    logger.info("%s: %d lines, %d users (from %d valid users)", args.out, len(out), args.users, len(users))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
