"""``energyrouter serve --config router.yaml``: the OpenAI-compatible routing server (extra ``serve``)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path
from typing import Any

from langchain_energyrouter.cli.util import PROG, say
from langchain_energyrouter.errors import missing_extra
from langchain_energyrouter.files import data_file


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``serve``."""
    p = sub.add_parser(
        "serve",
        parents=[common],
        help="serve the router as an OpenAI-compatible HTTP API (/v1/chat/completions, /metrics)",
        description="Load the candidates of a router.yaml and serve them behind one OpenAI-compatible endpoint. "
        "Binds 127.0.0.1 unless --host (or the config's host) says otherwise. Without --config it serves the "
        "shipped example (the two packaged models); every key is in docs/router-yaml.md.",
    )
    p.add_argument(
        "--config",
        help="the server's YAML config (default: the shipped examples/router.yaml over the packaged models)",
    )
    p.add_argument("--host", help="address to bind (default: the config's host, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: the config's port, else 8000)")
    p.add_argument(
        "--queue-length",
        type=int,
        help="requests that may wait for a place when every candidate they could use is full; beyond it 429 at "
        "once (default: the config's limits.queue_length, else 0: no queue)",
    )
    p.add_argument(
        "--max-queue-wait-s",
        type=float,
        help="longest a queued request waits, seconds, before 429 with Retry-After "
        "(default: the config's limits.max_queue_wait_s, else 10)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--decision-log",
        metavar="PATH",
        help="append one JSON line per call to PATH for `energyrouter report` (no prompt text; replaces the path "
        "of the config's decision_log, whose other options stay)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as err:
        raise missing_extra("uvicorn", "serve", "`energyrouter serve`") from err
    from langchain_energyrouter.server import build_router, create_app, load_config
    from langchain_energyrouter.server.app import KEEP_ALIVE_S
    from langchain_energyrouter.server.config import DecisionLogConfig

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config_path = args.config or data_file("router", "examples", ".yaml")
    say(f"{PROG} serve: config {config_path}")
    config, base = load_config(config_path)
    config = config.with_limits(queue_length=args.queue_length, max_queue_wait_s=args.max_queue_wait_s)
    if args.decision_log:  # a path given here is the caller's: relative to the working directory
        path, given = str(Path(args.decision_log).resolve()), config.decision_log
        config.decision_log = given.model_copy(update={"path": path}) if isinstance(given, DecisionLogConfig) else path
    settings = config.app_settings()  # fails fast on an unset api_key_env, before models load
    host = args.host or config.host
    warning = exposure_warning(host, settings.api_key is not None)
    if warning is not None:
        say(f"{PROG} serve: warning: {warning}")
    router = build_router(config, base)
    app = create_app(router, settings, close_router=True)
    try:
        uvicorn.run(
            app,
            host=host,
            port=args.port if args.port is not None else config.port,
            log_level=args.log_level,
            timeout_graceful_shutdown=config.limits.graceful_shutdown_s,
            timeout_keep_alive=KEEP_ALIVE_S,  # longer than clients' pool expiry: no reuse-while-closing resets
        )
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on Ctrl-C, then raises the signal again: stopping the server is a
        # clean exit (status 0), so `make serve` does not report an error for it.
        pass
    say(f"{PROG} serve: stopped")
    return 0


def exposure_warning(host: str, has_key: bool) -> str | None:
    """Why binding ``host`` without a key is risky, or None (a key is set, or ``host`` is loopback)."""
    if has_key or is_loopback(host):
        return None
    return (
        f"binding {host} without an API key: anyone who reaches this address can run the candidates and read "
        "their answers. Set api_key_env (or api_key) in the config, or bind 127.0.0.1."
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, ``127.0.0.0/8``, ``::1``); a name is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


__all__ = ["add_parser", "exposure_warning", "is_loopback", "run"]
