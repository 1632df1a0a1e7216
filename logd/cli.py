"""The `logd` command: `logd serve` runs the daemon; `apps`, `query` and
`tail` read a running one.

Every flag of `serve` also reads an environment variable, LOGD_ and the
flag's name in capitals (`--tls-cert` is LOGD_TLS_CERT); a flag given on
the command line wins.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop

from logd import client
from logd import config as cfg
from logd.errors import ConfigError, LogdError


def _env(name: str, default: str) -> str:
    return os.environ.get("LOGD_" + name.upper().replace("-", "_"), default)


def _env_list(name: str) -> list[str]:
    value = _env(name, "")
    return [part.strip() for part in value.split(",") if part.strip()]


def _serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve",
        help="receive syslog and serve the HTTP API",
        description="Receive syslog on UDP, TCP and TLS; store it; serve HTTP.",
    )
    p.add_argument(
        "--udp",
        default=_env("udp", "127.0.0.1:5514"),
        help="UDP listener HOST:PORT, or off (default %(default)s)",
    )
    p.add_argument(
        "--tcp",
        default=_env("tcp", "127.0.0.1:5514"),
        help="TCP listener HOST:PORT, or off (default %(default)s)",
    )
    p.add_argument(
        "--tls",
        default=_env("tls", "127.0.0.1:6514"),
        help="TLS listener HOST:PORT, used with a certificate (default %(default)s)",
    )
    p.add_argument(
        "--tls-cert",
        default=_env("tls-cert", ""),
        help="PEM certificate chain for the TLS listener",
    )
    p.add_argument(
        "--tls-key",
        default=_env("tls-key", ""),
        help="PEM private key for the TLS listener",
    )
    p.add_argument(
        "--http",
        default=_env("http", "127.0.0.1:8080"),
        help="HTTP API HOST:PORT, or off (default %(default)s)",
    )
    p.add_argument(
        "--tokens",
        default=_env("tokens", ""),
        help="tokens file: one token a line, then the apps it may read "
        "(comma separated) or *; without it HTTP serves loopback only",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        default=_env("insecure", "") not in ("", "0"),
        help="serve every app's lines beyond loopback without tokens",
    )
    p.add_argument(
        "--data",
        default=_env("data", "logd-data"),
        help="data folder: spool and embedded engine (default %(default)s)",
    )
    p.add_argument(
        "--clickhouse",
        default=_env("clickhouse", ""),
        help="storage DSN: chdb:///abs/path or http(s)://host:8123 "
        "(default: the embedded engine in DATA/clickhouse)",
    )
    p.add_argument(
        "--cluster",
        default=_env("cluster", ""),
        help="ClickHouse cluster name: use the replicated, sharded schema",
    )
    p.add_argument(
        "--retention",
        default=_env("retention", "30d"),
        help="keep lines this long, like 30d or 12h; 0 keeps them "
        "forever (default %(default)s)",
    )
    p.add_argument(
        "--substring-index",
        action="store_true",
        default=_env("substring-index", "") not in ("", "0"),
        help="index n-grams of every message, so a search for part of a word "
        "skips most lines; costs about twice the CPU a stored line takes",
    )
    p.add_argument(
        "--max-frame",
        type=int,
        default=_env("max-frame", "65536"),
        help="longest frame in bytes; longer ones are truncated and "
        "flagged (default %(default)s)",
    )
    for name in ("udp", "tcp", "tls"):
        p.add_argument(
            f"--{name}-allow",
            action="append",
            default=_env_list(f"{name}-allow"),
            metavar="CIDR",
            help=f"accept {name.upper()} only from this network "
            "(repeatable; default: any)",
        )
    p.add_argument(
        "--batch-rows",
        type=int,
        default=_env("batch-rows", "100000"),
        help="close a batch at this many lines (default %(default)s)",
    )
    p.add_argument(
        "--batch-interval",
        type=float,
        default=_env("batch-interval", "1.0"),
        help="close a batch after this many seconds (default %(default)s)",
    )
    p.add_argument(
        "--fsync-interval",
        type=float,
        default=_env("fsync-interval", "0.2"),
        help="force the spool to disk this often in seconds: what a power cut "
        "may lose; 0 never forces it (default %(default)s)",
    )
    p.add_argument(
        "--spool-max",
        default=_env("spool-max", "4GB"),
        help="disk the spool may use while storage is behind; past it TCP "
        "stops reading and UDP lines are dropped and counted (default %(default)s)",
    )
    p.add_argument(
        "--drain-timeout",
        default=_env("drain-timeout", "30s"),
        help="on stop, wait this long for storage to take the backlog; what "
        "is left stays in the spool for the next start (default %(default)s)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=_env("max-connections", "4096"),
        help="open TCP and TLS connections allowed per listener (default %(default)s)",
    )
    p.add_argument(
        "--idle-timeout",
        default=_env("idle-timeout", "10m"),
        help="close a TCP or TLS connection silent this long (default %(default)s)",
    )
    p.add_argument(
        "--frame-timeout",
        default=_env("frame-timeout", "30s"),
        help="close a connection that leaves a frame unfinished this long, "
        "storing what arrived (default %(default)s)",
    )
    p.add_argument(
        "--docker",
        action="append",
        default=_env_list("docker"),
        metavar="URL",
        help="Docker engine to read container labels "
        "from (repeatable; default the local socket or DOCKER_HOST)",
    )
    p.add_argument(
        "--log-level",
        default=_env("log-level", "info"),
        choices=["debug", "info", "warning", "error"],
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logd", description="Centralized logs for container platforms."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    client.add_commands(sub)
    return parser


def serve_config(args: argparse.Namespace) -> cfg.Config:
    """Turn `serve`'s arguments into a checked Config."""
    config = cfg.Config(
        udp=cfg.parse_address(args.udp, "--udp"),
        tcp=cfg.parse_address(args.tcp, "--tcp"),
        tls=cfg.parse_address(args.tls, "--tls"),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        http=cfg.parse_address(args.http, "--http"),
        data=Path(args.data),
        tokens=args.tokens,
        insecure=args.insecure,
        clickhouse=args.clickhouse,
        cluster=args.cluster,
        retention=cfg.parse_duration(args.retention, "--retention"),
        substring_index=args.substring_index,
        max_frame=args.max_frame,
        udp_allow=args.udp_allow,
        tcp_allow=args.tcp_allow,
        tls_allow=args.tls_allow,
        batch_rows=args.batch_rows,
        batch_interval=args.batch_interval,
        fsync_interval=args.fsync_interval,
        spool_max=cfg.parse_size(args.spool_max, "--spool-max"),
        drain_timeout=cfg.parse_duration(args.drain_timeout, "--drain-timeout"),
        max_connections=args.max_connections,
        idle_timeout=cfg.parse_duration(args.idle_timeout, "--idle-timeout"),
        frame_timeout=cfg.parse_duration(args.frame_timeout, "--frame-timeout"),
        docker=args.docker,
    )
    config.check()
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in client.COMMANDS:
        return client.run(args)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "serve":
            config = serve_config(args)
            # Imported here so the client commands start without the engine.
            from logd.server import run

            uvloop.run(run(config))
    except ConfigError as exc:
        print(f"logd: {exc}", file=sys.stderr)
        return 2
    except LogdError as exc:
        logging.getLogger("logd.server").error("%s", exc)
        return 1
    return 0
