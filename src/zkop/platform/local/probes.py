"""Readiness and liveness checks: a TCP connect, an HTTP GET (2xx/3xx), or a command (exit 0).

Each returns True or False and never raises for a failing target; a check that takes
longer than its timeout fails (a command is killed, with its process group).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping


async def tcp(host: str, port: int, timeout: float) -> bool:
    """A TCP connection to ``host:port`` can be opened within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


async def http(host: str, port: int, path: str, timeout: float) -> bool:
    """``GET path`` answers with a status from 200 to 399 within ``timeout`` seconds."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: zkop-probe\r\nConnection: close\r\n\r\n"
            writer.write(head.encode())
            await writer.drain()
            status = await reader.readline()
        parts = status.decode("latin-1").split()
        return len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit() and 200 <= int(parts[1]) < 400
    except (OSError, TimeoutError, UnicodeDecodeError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def run_command(
    argv: list[str], timeout: float, env: Mapping[str, str] | None = None, cwd: str | None = None
) -> bool:
    """The command exits with status 0 within ``timeout`` seconds."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError:
        return False
    try:
        async with asyncio.timeout(timeout):
            return await proc.wait() == 0
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return False
