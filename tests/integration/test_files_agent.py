"""The member file agent (``zkop files``) as the process a member Pod runs: serving a data
directory read-only, seeding an empty one, the token and (with TLS) the client certificate."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from zkop.platform.kubernetes.files import TOKEN_ENV, FilesClient, FilesError
from zkop.zk.certs import CertificateAuthority
from zkop.zk.tls import TlsFiles, client_context

pytestmark = pytest.mark.integration

TOKEN = "files-test-token"
ZKOP = str(Path(sys.executable).parent / "zkop")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Agents:
    """``zkop files`` processes started by a test; every one is stopped by pid."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, mode: str, data: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        log = (self.tmp / f"{mode}-{port}.log").open("wb")
        proc = subprocess.Popen(
            [ZKOP, "files", mode, "--data", str(data), "--host", "127.0.0.1", "--port", str(port), *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, **{TOKEN_ENV: TOKEN}),
        )
        self.procs.append(proc)
        return proc, port

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    a = Agents(tmp_path)
    try:
        yield a
    finally:
        a.stop()


async def answering(client: FilesClient, proc: subprocess.Popen[bytes]) -> None:
    async with asyncio.timeout(30):
        while not await client.ready():
            assert proc.poll() is None, "the agent ended"
            await asyncio.sleep(0.1)


def member_data(root: Path) -> Path:
    vdir = root / "version-2"
    vdir.mkdir(parents=True)
    (vdir / "snapshot.1a").write_bytes(os.urandom(3000))
    (vdir / "log.1b").write_bytes(os.urandom(70000))
    (vdir / "acceptedEpoch").write_text("1")  # not a data file: never served
    return root


async def test_serves_snapshots_and_logs_to_the_token_only(agents: Agents, tmp_path: Path) -> None:
    data = member_data(tmp_path / "data")
    proc, port = agents.start("serve", data)
    client = FilesClient("127.0.0.1", TOKEN, port=port)
    await answering(client, proc)
    assert await client.files() == [("log.1b", 70000), ("snapshot.1a", 3000)]
    dest = tmp_path / "copy"
    await client.fetch("log.1b", dest)
    assert dest.read_bytes() == (data / "version-2" / "log.1b").read_bytes()
    with pytest.raises(FileNotFoundError):
        await client.fetch("snapshot.ff", tmp_path / "nothing")
    with pytest.raises(FilesError, match="400"):
        await client.fetch("acceptedEpoch", tmp_path / "nothing")
    with pytest.raises(FilesError, match="401"):
        await FilesClient("127.0.0.1", "another-token", port=port).files()
    # Read-only: a serving agent takes no uploads.
    source = data / "version-2" / "snapshot.1a"
    with pytest.raises(FilesError, match="405"):
        await client.put("snapshot.2", source, hashlib.sha256(source.read_bytes()).hexdigest())


async def test_seed_takes_checked_files_once_then_ends(agents: Agents, tmp_path: Path) -> None:
    source = member_data(tmp_path / "backup") / "version-2"
    target = tmp_path / "volume"
    target.mkdir()
    proc, port = agents.start("seed", target)
    client = FilesClient("127.0.0.1", TOKEN, port=port)
    await answering(client, proc)
    with pytest.raises(FilesError, match="409"):
        await client.done()  # nothing received yet
    snapshot = source / "snapshot.1a"
    with pytest.raises(FilesError, match="sha256"):
        await client.put("snapshot.1a", snapshot, "0" * 64)
    assert not list((target / "version-2").iterdir()), "a file that fails its check is not kept"
    for f in (snapshot, source / "log.1b"):
        await client.put(f.name, f, hashlib.sha256(f.read_bytes()).hexdigest())
    await client.done()
    assert await asyncio.to_thread(proc.wait, 10) == 0
    for name in ("snapshot.1a", "log.1b"):
        assert (target / "version-2" / name).read_bytes() == (source / name).read_bytes()
        assert (target / "version-2" / name).stat().st_mode & 0o777 == 0o600
    # A restarted Pod: the volume holds data, so the seed step ends at once.
    again, _ = agents.start("seed", target)
    assert await asyncio.to_thread(again.wait, 30) == 0


async def test_with_tls_it_wants_a_client_certificate_of_the_cluster_ca(agents: Agents, tmp_path: Path) -> None:
    ca, other = CertificateAuthority.create("cluster-ca"), CertificateAuthority.create("another-ca")
    server = ca.issue("member-1", validity=3600, ip_addresses=["127.0.0.1"])
    (tmp_path / "keystore.pem").write_text(server.key_store)
    (tmp_path / "truststore.pem").write_text(ca.cert_pem)
    data = member_data(tmp_path / "data")
    tls_args = ("--tls-pem", str(tmp_path / "keystore.pem"), "--truststore", str(tmp_path / "truststore.pem"))
    proc, port = agents.start("serve", data, *tls_args)

    def context(authority: CertificateAuthority, name: str) -> FilesClient:
        issued = authority.issue(name, validity=3600, server=False)
        (tmp_path / f"{name}.pem").write_text(issued.key_store)
        files = TlsFiles(tmp_path / "truststore.pem", tmp_path / f"{name}.pem", check_hostname=False)
        return FilesClient("127.0.0.1", TOKEN, port=port, tls=client_context(files))

    operator = context(ca, "zkop-operator")
    await answering(operator, proc)
    assert [n for n, _ in await operator.files()] == ["log.1b", "snapshot.1a"]
    with pytest.raises(FilesError):
        await context(other, "stranger").files()
    with pytest.raises(FilesError):
        await FilesClient("127.0.0.1", TOKEN, port=port).files()  # plain HTTP on the TLS port
