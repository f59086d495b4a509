"""Probe and lifecycle-hook actions: ``exec``, ``httpGet``, ``tcpSocket`` and ``sleep``, as the kubelet runs them.

``exec`` runs in the container (its namespaces, environment and working directory) with the
probe's timeout; ``httpGet`` and ``tcpSocket`` go to the Pod's IP (or the action's ``host``)
from the agent; an HTTP status from 200 to 399 is a success. gRPC probes always fail with a
message saying they are not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from zkop.testing.nodeagent.kube import Obj

Exec = Callable[[list[str], float], Awaitable[tuple[int | None, str]]]


@dataclass
class Target:
    """Where a container's probes go."""

    pod_ip: str
    ports: Mapping[str, int]  # the container's named ports
    exec: Exec


def resolve_port(port: Any, ports: Mapping[str, int]) -> int:
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    if text in ports:
        return ports[text]
    raise ValueError(f"port {text!r} is not a named port of the container")


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):  # the peer may be gone already: the probe has its answer
        await writer.wait_closed()


async def _http(action: Obj, target: Target, timeout: float) -> tuple[bool, str]:
    port = resolve_port(action.get("port"), target.ports)
    host = action.get("host") or target.pod_ip
    path = action.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    context = None
    if str(action.get("scheme") or "HTTP").upper() == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    headers = {"Host": f"{host}:{port}", "User-Agent": "kube-probe/1.34", "Accept": "*/*", "Connection": "close"}
    for h in action.get("httpHeaders") or []:
        headers[h.get("name", "")] = h.get("value", "")
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    url = f"{'https' if context else 'http'}://{host}:{port}{path}"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
            try:
                writer.write(request.encode())
                await writer.drain()
                status_line = await reader.readline()
            finally:
                await _close(writer)
    except TimeoutError:
        return False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    except OSError as e:
        return False, f'Get "{url}": dial tcp {host}:{port}: connect: {e.strerror or e}'
    parts = status_line.decode("latin-1").split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False, f'Get "{url}": malformed HTTP response {status_line!r}'
    code = int(parts[1])
    if 200 <= code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {code}"


async def _tcp(action: Obj, target: Target, timeout: float) -> tuple[bool, str]:
    port = resolve_port(action.get("port"), target.ports)
    host = action.get("host") or target.pod_ip
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
            await _close(writer)
    except TimeoutError:
        return False, f"dial tcp {host}:{port}: i/o timeout"
    except OSError as e:
        return False, f"dial tcp {host}:{port}: connect: {e.strerror or e}"
    return True, ""


async def run_action(action: Obj, target: Target, timeout: float) -> tuple[bool, str]:
    """Run one probe or hook action; ``(success, message)``."""
    try:
        if "exec" in action:
            command = [str(a) for a in (action["exec"] or {}).get("command") or []]
            if not command:
                return False, "exec: no command"
            code, output = await target.exec(command, timeout)
            if code is None:
                return False, f"command {command!r} timed out"
            if code != 0:
                return False, output.strip() or f"command {command!r} exited with {code}"
            return True, output
        if "httpGet" in action:
            return await _http(action["httpGet"], target, timeout)
        if "tcpSocket" in action:
            return await _tcp(action["tcpSocket"], target, timeout)
        if "sleep" in action:
            await asyncio.sleep(float((action["sleep"] or {}).get("seconds") or 0))
            return True, ""
        if "grpc" in action:
            return False, "gRPC probes are not supported by the zkop node agent"
    except ValueError as e:
        return False, str(e)
    return False, f"unknown action {sorted(action)}"
