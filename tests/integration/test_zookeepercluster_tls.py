"""TLS for clients and between members, on real ZooKeeper processes run by the operator."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError
from typer.testing import CliRunner

from tests.integration.test_zookeepercluster import Operator, available, operator
from zkop.api import ZookeeperCluster, parse_object
from zkop.cli import main
from zkop.platform.base import ClusterRef
from zkop.platform.local.ensemble import MAIN_CLASS
from zkop.platform.local.tls import LocalTls
from zkop.testing.quorum import Writer
from zkop.zk import auth, certs, fourlw
from zkop.zk.config import MemberAddress, ServerSettings, render_dynamic, render_static
from zkop.zk.distribution import locate
from zkop.zk.tls import TlsFiles, client_context, write_private

pytestmark = pytest.mark.integration
__all__ = ["operator"]  # the fixture, shared with test_zookeepercluster

REF = ClusterRef("default", "zk")


def tls_cluster(
    *, client: str | None = "Tls", quorum: str | None = "Tls", validity: int = 86400, renew: int = 3600
) -> ZookeeperCluster:
    tls: dict[str, Any] = {"certificates": {"validitySeconds": validity, "renewBeforeSeconds": renew}}
    if client:
        tls["client"] = {"mode": client}
    if quorum:
        tls["quorum"] = {"mode": quorum}
    obj = parse_object(
        {
            "apiVersion": "zkop.io/v1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": "zk"},
            "spec": {
                "replicas": 3,
                "config": {"tickTime": 500, "initLimit": 20, "syncLimit": 10},
                "jvm": {"heap": "64Mi"},
                "tls": tls,
            },
        }
    )
    assert isinstance(obj, ZookeeperCluster)
    return obj


async def user_files(op: Operator, directory: Path, name: str = "alice", validity: float = 3600) -> TlsFiles:
    """A client certificate for ``name`` as `zkop zkc cert` writes it."""
    issued, ca = await op.platform.issue_client_certificate(REF, name, validity=validity)
    write_private(directory / "ca.crt", ca)
    write_private(directory / "tls.crt", issued.cert_pem)
    write_private(directory / "tls.key", issued.key_pem)
    return TlsFiles(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")


def connects(hosts: str, timeout: float = 4.0, **options: Any) -> bool:
    """Whether a client gets a session that can read."""
    client = KazooClient(hosts, timeout=timeout, connection_retry={"max_tries": 1}, **options)
    try:
        client.start(timeout=timeout)
    except KazooTimeoutError:
        return False
    try:
        client.get_children("/")
        return True
    except KazooException:
        return False  # with client TLS only, a plain session is closed at its first request
    finally:
        client.stop()
        client.close()


@pytest.mark.timeout(300)
async def test_client_tls_with_certificates_and_a_plain_connection_refused(operator: Operator, tmp_path: Path) -> None:
    await operator.store.create(tls_cluster())
    obj = await operator.wait(available(3), timeout=120)  # status is read over TLS (4lw on the secure port)
    hosts = obj.status.connection_string
    assert hosts and obj.status.certificates_expire_at
    ens = operator.platform.ensemble(REF)
    tls = LocalTls(ens)
    # Key material: private files, the CA key never in a member's directory.
    assert (ens.dir / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600
    for m in obj.status.members:
        assert tls.key_store(m.id).stat().st_mode & 0o777 == 0o600
        assert "PRIVATE KEY" in tls.key_store(m.id).read_text()
        assert ca_key_not_in(ens.member_dir(m.id), (ens.dir / "tls" / "ca.key").read_text())
        cfg = ens.config_file(m.id).read_text()
        assert "enforce.auth.schemes=x509" in cfg and "client.portUnification=true" in cfg and "sslQuorum=true" in cfg

    # `zkop zkc cert` issues a user's certificate from the cluster's CA.
    out = tmp_path / "alice"
    args = [
        "--state-dir",
        str(operator.state_dir),
        "zkc",
        "cert",
        "zk",
        "--out",
        str(out),
        "--cn",
        "alice",
        "-o",
        "json",
    ]
    result = await asyncio.to_thread(CliRunner().invoke, main.app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["commonName"] == "alice"
    assert (out / "tls.key").stat().st_mode & 0o777 == 0o600
    alice = TlsFiles(out / "ca.crt", out / "tls.crt", out / "tls.key")
    client = KazooClient(hosts, timeout=10, **alice.kazoo_options())
    await asyncio.to_thread(client.start, 20)
    try:
        await asyncio.to_thread(client.create, "/hello", b"over tls")
        data, _ = await asyncio.to_thread(client.get, "/hello")
        assert data == b"over tls"
    finally:
        await asyncio.to_thread(client.stop)
        client.close()

    # No plain session: without a client certificate (only TLS carries one) ZooKeeper closes it,
    # also with the super user's password.
    assert not await asyncio.to_thread(connects, hosts)
    password = await operator.platform.super_password(REF)
    assert not await asyncio.to_thread(connects, hosts, auth_data=[auth.super_auth(password)])
    # No certificate, or one from another CA: the handshake is refused.
    other = certs.CertificateAuthority.create("someone else")
    evil = other.issue("mallory", validity=3600, server=False)
    write_private(tmp_path / "evil.crt", evil.cert_pem)
    write_private(tmp_path / "evil.key", evil.key_pem)
    evil_files = TlsFiles(alice.ca, tmp_path / "evil.crt", tmp_path / "evil.key")
    assert not await asyncio.to_thread(connects, hosts, **evil_files.kazoo_options())
    host, port = hosts.split(",")[0].split(":")
    bare = ssl.create_default_context(cafile=str(alice.ca))
    with pytest.raises((ssl.SSLError, OSError)):
        await asyncio.to_thread(tls_round_trip, host, int(port), bare)
    # The operator's own view: the four-letter words over TLS with its certificate.
    state = await fourlw.server_state(host, int(port), tls=client_context(alice))
    assert state.serving and state.mode in ("leader", "follower")
    # Reconfiguration goes over TLS too (kazoo with the operator's certificate): scale 3 -> 4.
    await operator.change(replicas=4)
    obj = await operator.wait(available(4), timeout=120)
    assert "MemberAdded" in await operator.reasons()
    new = max(m.id for m in obj.status.members)
    assert "enforce.auth.schemes=x509" in ens.config_file(new).read_text()


def ca_key_not_in(directory: Path, key: str) -> bool:
    marker = key.strip().splitlines()[1]
    return not any(f.is_file() and marker in f.read_text(errors="replace") for f in directory.rglob("*"))


def tls_round_trip(host: str, port: int, ctx: ssl.SSLContext) -> bytes:
    with socket.create_connection((host, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
        s.sendall(b"ruok")
        return s.recv(16)


@pytest.mark.timeout(300)
async def test_quorum_tls_keeps_a_plain_peer_out(operator: Operator, tmp_path: Path) -> None:
    """Members talk TLS to each other: a plain server that lists itself beside them (as a member
    being added does) never syncs, while a TLS member added by scale-up joins."""
    await operator.store.create(tls_cluster(client=None))
    obj = await operator.wait(available(3), timeout=120)
    ens = operator.platform.ensemble(REF)
    hosts = obj.status.connection_string
    assert hosts
    # Client port plain here: anonymous clients connect.
    assert await asyncio.to_thread(connects, hosts)
    host, port = hosts.split(",")[0].split(":")
    conf = await fourlw.conf(host, int(port))
    members = list(conf.members)
    assert len(members) == 3

    # A plain intruder with the committed configuration plus itself.
    free = [free_port() for _ in range(3)]
    intruder = tmp_path / "intruder"
    data = intruder / "data"
    data.mkdir(parents=True)
    (data / "myid").write_text("200\n")
    me = MemberAddress(200, "127.0.0.1", free[1], free[2], free[0])
    dynamic = intruder / "zoo.cfg.dynamic"
    dynamic.write_text(render_dynamic([*members, me]))
    cfg = intruder / "zoo.cfg"
    cfg.write_text(render_static(data_dir=data, dynamic_file=dynamic, settings=ServerSettings(tick_time=500)))
    dist = locate()
    log = (intruder / "member.log").open("wb")
    proc = subprocess.Popen(
        [
            dist.java,
            "-Xmx64m",
            "-cp",
            dist.classpath_str(),
            MAIN_CLASS,
            str(cfg),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k not in ("CLASSPATH", "JAVA_TOOL_OPTIONS")},
    )
    try:
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            state = await fourlw.server_state("127.0.0.1", free[0], timeout=1.0)
            assert not state.serving, "a plain peer joined a TLS quorum"
            await asyncio.sleep(1.0)
    finally:
        proc.kill()
        proc.wait()
        log.close()
    member_logs = "".join((ens.member_dir(m.id) / "member.log").read_text(errors="replace") for m in obj.status.members)
    # The members' quorum connections are TLS (ZooKeeper logs each handshake); the intruder's
    # plain connections are dropped by them.
    assert "QuorumCnxManager - SSL handshake complete" in member_logs
    assert "Connection broken for id" in (intruder / "member.log").read_text(errors="replace")
    # A member the operator adds (a TLS peer with a certificate from the cluster's CA) joins.
    await operator.change(replicas=4)
    obj = await operator.wait(available(4), timeout=120)
    assert len(obj.status.members) == 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.timeout(480)
async def test_rotation_rolls_members_before_expiry_and_keeps_every_write(operator: Operator, tmp_path: Path) -> None:
    """Certificates valid 80 s, renewed when 60 s are left: every member is rolled (followers
    first, the leader last) for a new certificate while a TLS client writes."""
    await operator.store.create(tls_cluster(validity=80, renew=60))
    obj = await operator.wait(available(3), timeout=120)
    ens = operator.platform.ensemble(REF)
    tls = LocalTls(ens)
    first = {m.id: tls.member_expires(m.id) for m in obj.status.members}
    alice = await user_files(operator, tmp_path / "alice")
    assert obj.status.connection_string
    writer = Writer(obj.status.connection_string, tls=alice)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        await asyncio.to_thread(writer.started.wait, 30)

        async def renewed() -> bool:
            now = {m: tls.member_expires(m) for m in first}
            return all((now[m] or 0) > (first[m] or 0) for m in first)

        async with asyncio.timeout(240):
            while not await renewed():  # noqa: ASYNC110 - polled files
                await asyncio.sleep(1.0)
        await operator.wait(available(3), timeout=120)
    finally:
        writer.stop.set()
        await asyncio.to_thread(thread.join, 30)
    events = await operator.store.list_events("default", kind="zkc", name="zk")
    rolled = [e for e in events if e.reason == "RollingRestart" and "CertificateExpiring" in e.message]
    assert len(rolled) >= 3, [(e.reason, e.message) for e in events]
    assert len(writer.acked) > 50
    missing = await asyncio.to_thread(writer.lost)
    assert not missing, f"{len(missing)} acknowledged writes lost"
