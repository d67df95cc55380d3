"""A small TCP relay: each listening address forwards every connection to one target address.

The worker hosts of the Celery scale-out test and benchmark are network namespaces; the
services they need (PostgreSQL, RabbitMQ, the Graph simulator) listen on the loopback of the
root namespace, which a namespace cannot reach. One relay in the root namespace listens on the
namespace's gateway address and forwards to loopback. Plain Python (asyncio), so the test needs
no socat.

    python -m inventory_pipelines.tcp_relay 10.213.7.1:5432=127.0.0.1:5432 ...

Prints one line `ready` on stdout once every address listens; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Route:
    """Connections accepted on `listen_host:listen_port` go to `target_host:target_port`."""

    listen_host: str
    listen_port: int
    target_host: str
    target_port: int

    @classmethod
    def parse(cls, text: str) -> Route:
        """`LISTEN_HOST:PORT=TARGET_HOST:PORT`."""
        try:
            listen, target = text.split("=", 1)
            listen_host, listen_port = listen.rsplit(":", 1)
            target_host, target_port = target.rsplit(":", 1)
            return cls(listen_host, int(listen_port), target_host, int(target_port))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"expected LISTEN_HOST:PORT=TARGET_HOST:PORT, got {text!r}"
            ) from exc

    def __str__(self) -> str:
        return f"{self.listen_host}:{self.listen_port}={self.target_host}:{self.target_port}"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close the other side."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _relay(route: Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        target_reader, target_writer = await asyncio.open_connection(
            route.target_host, route.target_port
        )
    except OSError:
        writer.close()
        return
    try:
        await asyncio.gather(_pipe(reader, target_writer), _pipe(target_reader, writer))
    finally:
        writer.close()
        target_writer.close()


async def start_relays(routes: Sequence[Route]) -> list[asyncio.Server]:
    """Listen on every route; raises OSError when an address cannot be bound."""
    servers: list[asyncio.Server] = []
    try:
        for route in routes:

            async def handle(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter, route: Route = route
            ) -> None:
                await _relay(route, reader, writer)

            servers.append(
                await asyncio.start_server(
                    handle, route.listen_host, route.listen_port, reuse_address=True
                )
            )
    except OSError:
        for server in servers:
            server.close()
        raise
    return servers


async def _main(routes: Sequence[Route]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers = await start_relays(routes)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()
    # Open connections end with the relay: cancel their tasks instead of leaving them pending.
    connections = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in connections:
        task.cancel()
    await asyncio.gather(*connections, return_exceptions=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inventory_pipelines.tcp_relay")
    parser.add_argument("routes", nargs="+", type=Route.parse, metavar="LISTEN=TARGET")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args.routes))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
