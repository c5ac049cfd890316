"""``energyrouter state show|reset``: inspect and clear the learned state a router keeps apart from its profile."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from langchain_energyrouter.learn.loop import COST_KIND


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``state`` with its ``show`` and ``reset`` actions."""
    p = sub.add_parser(
        "state",
        parents=[common],
        help="show or reset what routers learned online (kept apart from the profile)",
        description="Learned state lives in a store (SQLite file; default: $LANGCHAIN_ENERGYROUTER_STATE or "
        "state.sqlite in the user data directory). `show` prints it, `reset` clears it (the profile is untouched).",
    )
    p.add_argument("action", choices=["show", "reset"])
    p.add_argument(
        "--store", default="default", help="SQLite state file or redis:// URL (default: the user's default store)"
    )
    p.add_argument("--model", help="reset only this model's learned costs")
    p.add_argument("--kind", help="reset only documents of this kind (e.g. cost)")
    p.add_argument("--json", action="store_true", help="machine-readable output (show)")
    p.set_defaults(func=run)


def _summary(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    if kind != COST_KIND:
        return {"keys": sorted(payload)}
    learner = payload.get("learner") or {}
    summary = payload.get("summary") or {}
    return {
        "profile": payload.get("profile"),
        "energy_method": learner.get("energy_method"),
        "runtime": {"observations": summary.get("n_runtime"), "coefficients": summary.get("runtime")},
        "energy": {"observations": summary.get("n_energy"), "coefficients": summary.get("energy")},
        "length": {"observations": summary.get("n_length"), "output_tokens": summary.get("output_tokens")},
        "resets": summary.get("resets"),
    }


def run(args: argparse.Namespace) -> int:
    from langchain_energyrouter.state import open_store

    _check_existing_store(args.store)
    store: Any = open_store(args.store)
    where = str(getattr(store, "path", None) or getattr(store, "url", None) or args.store)
    try:
        if args.action == "reset":
            if args.model is not None:
                removed = store.delete(args.kind or COST_KIND, args.model)
            else:
                removed = store.delete(args.kind, None)
            print(f"Removed {removed} learned-state entr{'y' if removed == 1 else 'ies'} from {where}.")
            return 0
        report: dict[str, Any] = {"store": where, "documents": {}, "events": store.logs()}
        for kind in store.kinds():
            report["documents"][kind] = {
                key: {"version": doc.version, **_summary(kind, doc.payload)} for key, doc in store.items(kind).items()
            }
    finally:
        store.close()
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    print(f"Learned state in {report['store']}")
    if not report["documents"] and not report["events"]:
        print("  (empty: nothing learned yet; every prediction comes from the profile)")
    for kind, docs in report["documents"].items():
        for key, info in docs.items():
            print(f"  {kind}/{key}  version {info['version']}")
            for target in ("runtime", "energy", "length"):
                if isinstance(info.get(target), dict):
                    details = ", ".join(f"{k}={_fmt(v)}" for k, v in info[target].items())
                    print(f"    {target}: {details}")
    for log, count in report["events"].items():
        print(f"  events {log}: {count}")
    return 0


def _check_existing_store(spec: str) -> None:
    """Refuse a path that is missing or is a SQLite file that is not a store, before anything writes to it.

    Opening a store creates its directories, file and tables; for ``show`` and ``reset`` a mistyped path
    or an unrelated database must be an error instead.
    """
    import sqlite3
    from pathlib import Path

    from langchain_energyrouter.errors import StateError

    if spec == "default" or "://" in spec:
        return
    path = Path(spec).expanduser()
    if not path.is_file():
        raise StateError(f"No state store at {path}; check --store (show and reset never create one).")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        row = None
    if row is None:
        raise StateError(f"{path} is not an energyrouter state store; it was left unchanged. Check --store.")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


__all__ = ["add_parser", "run"]
