"""A screenshot of the ``urllm serve`` page on a run's artifacts (headless Chromium, loopback only).

Loads the run like ``urllm serve``, serves it on 127.0.0.1 (a free port), picks a known user (or types a
history) on the page, presses Recommend and saves the full page as PNG:

    python scripts/serve_screenshot.py --config configs/movielens.yaml run_dir=runs/serve-demo \\
        --user 1m_44 --domain heart --system urllm --out docs/serve.png
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a known user id")
    who.add_argument("--history", action="append", help="a title to type into the history (repeatable)")
    p.add_argument("--domain", required=True)
    p.add_argument("--system", help="system to pick on the page (default serve.default_system)")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--out", default="docs/serve.png")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from urllm.config import load_config
    from urllm.serve.app import create_app
    from urllm.serve.browser import LoopbackServer, open_page, recommend_on_page
    from urllm.serve.service import Recommendation

    cfg = load_config(args.config, args.overrides)
    service = Recommendation.load(cfg, args.config)
    with LoopbackServer(create_app(service)) as server:
        driver = open_page(server.url, width=args.width)
        try:
            shown = recommend_on_page(
                driver, user=args.user, history=args.history, domain=args.domain, k=args.k, system=args.system
            )
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(args.width, height + 40)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(args.out)
        finally:
            driver.quit()
    logging.info("top-%d shown: %s; wrote %s", args.k, shown["titles"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
