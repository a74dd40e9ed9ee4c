"""Run one dispatch from the command line: `python -m connectors.rails.run --db URL --rail iso20022 ...`.

A lean entry point (no Dagster, no CLI framework) so a scheduler, or a chaos test that kills it,
starts it in well under a second. Prints the dispatch report as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys

from aios.kernel.db import get_engine
from connectors.rails.dispatch import collect, dispatch
from connectors.rails.select import RAILS, build_rail


def main(argv: list[str] | None = None) -> int:
    """Dispatch pending intents once; exit 0 when done (even if some stay pending), 2 on bad arguments."""
    p = argparse.ArgumentParser(prog="python -m connectors.rails.run", description=__doc__)
    p.add_argument("--db", required=True, help="SQLAlchemy URL of the platform database (the outbox)")
    p.add_argument("--rail", choices=RAILS, required=True)
    p.add_argument("--bank-dir", default="", help="iso20022: the bank's folders (outbound/, inbound/)")
    p.add_argument("--api-url", default="", help="http: the payment API's base URL")
    p.add_argument("--bank-standin", action="store_true", help="iso20022: run mock-bank in this process")
    p.add_argument("--gates", default="data_quality,drift", help="comma-separated gates a partition must pass")
    p.add_argument("--partition", default=None)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--timeout", type=float, default=2.0, help="http: seconds per request")
    args = p.parse_args(argv)
    rail, settle = build_rail(args.rail, args.bank_dir, args.api_url, args.bank_standin)
    if args.rail == "http":
        from connectors.rails.http_api import HttpPaymentRail

        rail = HttpPaymentRail(args.api_url, timeout_s=args.timeout)
    engine = get_engine(args.db)
    gates = tuple(g for g in args.gates.split(",") if g)
    report = dispatch(engine, rail, gates, partition=args.partition, batch_size=args.batch_size)
    if settle is not None:
        settle()
        collect(engine, rail, report)
    print(json.dumps({"batches": report.batches, "sent": report.sent, "acknowledged": len(report.acknowledged),
                      "rejected": len(report.rejected), "refused": report.refused,
                      "unavailable": report.unavailable}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
