"""Who may write in the service registry, against real ZooKeeper.

Reading stays open to anyone; every write needs the operator's identity or the service's
own (``svc/<ns>/<app>``), and a service's identity writes only in its own folders.
Also the upgrade from folders that granted world CREATE, and ``zkop registry``.
"""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, NoNodeError
from kazoo.security import ACL, make_acl
from typer.testing import CliRunner, Result

from zkop.api import parse_object
from zkop.cli.main import app as cli_app
from zkop.client.bridge import ZkClient
from zkop.client.connect import Connection
from zkop.discovery import AsyncServiceDiscovery, Instance, RegistryError, registry
from zkop.store import Store

pytestmark = pytest.mark.integration

WORLD_READ_CREATE = make_acl("world", "anyone", read=True, create=True)  # what older versions granted
WORLD_ALL = make_acl("world", "anyone", all=True)


def inst(i: int) -> Instance:
    return Instance(f"i{i}", "127.0.0.1", 40000 + i)


@pytest.fixture
def kazoo_factory(connection: Connection) -> Iterator[Callable[..., KazooClient]]:
    """Plain kazoo clients (anonymous or with some identity), stopped at teardown."""
    made: list[KazooClient] = []

    def make(auth: str | None = None) -> KazooClient:
        client = KazooClient(connection.hosts, auth_data=[("digest", auth)] if auth else [])
        client.start(timeout=10)
        made.append(client)
        return client

    yield make
    for client in made:
        client.stop()
        client.close()


def refused(action: Callable[[], object]) -> None:
    with pytest.raises(NoAuthError):
        action()


def acl_summary(acl: list[ACL]) -> set[tuple[int, str, str]]:
    """(perms, scheme, user) of each entry; digests compared by user (others see ``user:x``)."""
    return {(a.perms, a.id.scheme, a.id.id.split(":")[0]) for a in acl}


async def the_operator_writes(client: ZkClient, conn: Connection, app: str = "web") -> registry.ServiceIdentity:
    identity = await registry.ensure_service(client, conn.root, "default", app, conn.acl())
    await registry.publish_endpoint(client, conn.root, "default", app, inst(1), conn.acl())
    return identity


# ---- nobody without the right identity writes ------------------------------------------------


def attempts(conn: Connection, c: KazooClient, victim_load: str) -> list[tuple[str, Callable[[], object]]]:
    """Every kind of write an intruder may try in the registry."""
    root = conn.root
    eps = registry.endpoints_path(root, "default", "web")
    load = registry.load_path(root, "default", "web")
    evil = registry.encode(Instance("evil", "127.0.0.1", 6666))
    return [
        ("add an endpoint to an existing service", lambda: c.create(f"{eps}/evil", evil, ephemeral=True)),
        ("make a new service", lambda: c.create(registry.service_path(root, "default", "evilsvc"))),
        ("make a new namespace", lambda: c.create(f"{registry.services_path(root)}/evilns")),
        ("add under a service folder", lambda: c.create(f"{registry.service_path(root, 'default', 'web')}/x")),
        ("change an operator endpoint", lambda: c.set(f"{eps}/i1", evil)),
        ("delete an operator endpoint", lambda: c.delete(f"{eps}/i1")),
        ("report load", lambda: c.create(f"{load}/evil", b'{"value": 1e9}', ephemeral=True)),
        ("change another's load", lambda: c.set(victim_load, b'{"value": 1e9}')),
        ("delete another's load", lambda: c.delete(victim_load)),
        ("open a folder's ACL", lambda: c.set_acls(eps, [WORLD_ALL])),
        ("read the identity", lambda: c.get(registry.credentials_path(root, "default", "web"))),
    ]


async def test_anonymous_and_foreign_identities_cannot_write(
    zk_client: ZkClient, connection: Connection, kazoo_factory: Callable[..., KazooClient]
) -> None:
    web = await the_operator_writes(zk_client, connection)
    other = await registry.ensure_service(zk_client, connection.root, "default", "other", connection.acl())
    async with AsyncServiceDiscovery(connection.hosts, root=connection.root) as sd:
        reg = await sd.register("default", "web", inst(2), credentials=web.credentials)
        await reg.report_load(3.0)
        victim_load = f"{registry.load_path(connection.root, 'default', 'web')}/i2"
        for who, client in (("anonymous", kazoo_factory()), ("another service", kazoo_factory(other.credentials))):
            for what, action in attempts(connection, client, victim_load):
                with pytest.raises(NoAuthError):
                    action()
                    pytest.fail(f"{who} could {what}")
            # Reading stays open (like DNS).
            assert registry.decode(client.get(f"{reg.path}")[0]) == inst(2)
        # Nothing of theirs got in; everything of the operator and the service is intact.
        assert await registry.list_endpoints(zk_client, connection.root, "default", "web") == [inst(1), inst(2)]
        assert await registry.read_loads(zk_client, connection.root, "default", "web") == {"i2": 3.0}
        assert await zk_client.exists(registry.service_path(connection.root, "default", "evilsvc")) is None


async def test_the_client_api_refuses_without_the_right_identity(zk_client: ZkClient, connection: Connection) -> None:
    await the_operator_writes(zk_client, connection)
    other = await registry.ensure_service(zk_client, connection.root, "default", "other", connection.acl())
    async with AsyncServiceDiscovery(connection.hosts, root=connection.root) as sd:
        with pytest.raises(RegistryError, match=r"needs the service's registry identity.*credentials=.*registry grant"):
            await sd.register("default", "web", inst(5))
        with pytest.raises(RegistryError, match=r"refused for digest:svc/default/other"):
            await sd.register("default", "web", inst(5), credentials=other.credentials)
        with pytest.raises(RegistryError, match="USER:PASSWORD"):
            await sd.register("default", "web", inst(5), credentials="no-colon")
        # A service not in the registry: a client cannot make it.
        with pytest.raises(
            RegistryError, match=r"default/nope is not in the registry.*zkop registry grant default/nope"
        ):
            await sd.register("default", "nope", inst(5), credentials=other.credentials)
        with pytest.raises(RegistryError, match="needs the service's registry identity"):
            await registry.report_load(sd.client, connection.root, "default", "web", "i5", 1.0)
        assert sd.registrations == [], "no session left behind by a refused registration"
    assert await registry.list_endpoints(zk_client, connection.root, "default", "web") == [inst(1)]
    assert await registry.read_loads(zk_client, connection.root, "default", "web") == {}
    assert await zk_client.exists(registry.service_path(connection.root, "default", "nope")) is None
    # A load report as another service's identity is refused too.
    foreign = ZkClient(connection.hosts, auth_data=other.auth_data)
    await foreign.start()
    try:
        with pytest.raises(RegistryError, match="refused"):
            await registry.report_load(foreign, connection.root, "default", "web", "i5", 1.0)
    finally:
        await foreign.stop()


async def test_the_right_identity_registers_and_the_operator_can_remove(
    zk_client: ZkClient, connection: Connection, kazoo_factory: Callable[..., KazooClient]
) -> None:
    identity = await the_operator_writes(zk_client, connection)
    async with AsyncServiceDiscovery(connection.hosts, root=connection.root) as sd:
        provider = await sd.provider("default/web")
        reg = await sd.register("default", "web", inst(2), credentials=identity.credentials)
        await reg.report_load(4.5)
        await provider.cache.wait_for(lambda xs: [x.id for x in xs] == ["i1", "i2"], 10)
        load = f"{registry.load_path(connection.root, 'default', 'web')}/i2"
        for path in (reg.path, load):
            acl, _ = await zk_client.get_acls(path)
            assert acl_summary(acl) == {(31, "digest", identity.user), (1, "world", "anyone")}
        # Same identity, another instance (one trust domain): may withdraw it, as the service may.
        same = kazoo_factory(identity.credentials)
        same.create(f"{registry.endpoints_path(connection.root, 'default', 'web')}/i3", registry.encode(inst(3)))
        same.delete(f"{registry.endpoints_path(connection.root, 'default', 'web')}/i3")
        refused(lambda: same.set(f"{registry.endpoints_path(connection.root, 'default', 'web')}/i1", b"{}"))
        refused(lambda: same.delete(registry.endpoints_path(connection.root, "default", "web")))
        # The operator removes what a service registered.
        assert await registry.withdraw_endpoint(zk_client, connection.root, "default", "web", "i2")
        assert await registry.withdraw_load(zk_client, connection.root, "default", "web", "i2")
        await provider.cache.wait_for(lambda xs: [x.id for x in xs] == ["i1"], 10)
        assert await registry.read_loads(zk_client, connection.root, "default", "web") == {}


async def test_identity_is_made_once_and_kept_from_others(
    connection: Connection, kazoo_factory: Callable[..., KazooClient]
) -> None:
    # Two operator sessions (two replicas, or a replica and the CLI) at the same moment agree.
    clients = [connection.client() for _ in range(4)]
    await asyncio.gather(*(c.start() for c in clients))
    try:
        made = await asyncio.gather(
            *(registry.service_identity(c, connection.root, "default", "web", connection.acl()) for c in clients)
        )
        assert len({m.password for m in made}) == 1
        path = registry.credentials_path(connection.root, "default", "web")
        acl, _ = await clients[0].get_acls(path)
        assert acl == connection.acl(), "the operator's only"
        refused(lambda: kazoo_factory().get(path))
        refused(lambda: kazoo_factory(made[0].credentials).get(path))
        # A corrupt identity is reported, never replaced behind the owner's back.
        await clients[0].set(path, b"not json")
        with pytest.raises(RegistryError, match="is not a registry identity"):
            await registry.service_identity(clients[0], connection.root, "default", "web", connection.acl())
    finally:
        await asyncio.gather(*(c.stop() for c in clients))


# ---- the upgrade ---------------------------------------------------------------------------


async def test_ensure_service_repairs_the_acls_of_older_versions(
    zk_client: ZkClient, connection: Connection, kazoo_factory: Callable[..., KazooClient]
) -> None:
    root, owner = connection.root, connection.acl()
    base = registry.services_path(root)
    await zk_client.ensure_path(root, acl=owner)
    # As the operator of an older version made them: world CREATE on four folders.
    for path, acl in (
        (base, [*owner, WORLD_READ_CREATE]),
        (f"{base}/default", [*owner, WORLD_READ_CREATE]),
        (registry.service_path(root, "default", "web"), [*owner, registry.WORLD_READ]),
        (registry.endpoints_path(root, "default", "web"), [*owner, WORLD_READ_CREATE]),
        (registry.load_path(root, "default", "web"), [*owner, WORLD_READ_CREATE]),
    ):
        await zk_client.create(path, b"", acl=acl)
    # ...and as an anonymous self-registration of an older version made a service: world ALL.
    anon = kazoo_factory()
    for path in (
        registry.service_path(root, "default", "legacy"),
        registry.endpoints_path(root, "default", "legacy"),
        registry.load_path(root, "default", "legacy"),
    ):
        anon.create(path, b"", acl=[WORLD_ALL])
    anon.create(
        f"{registry.endpoints_path(root, 'default', 'legacy')}/old",
        registry.encode(Instance("old", "h", 1)),
        acl=[WORLD_ALL],
    )

    web = await registry.ensure_service(zk_client, root, "default", "web", owner)
    legacy = await registry.ensure_service(zk_client, root, "default", "legacy", owner)

    closed = {(31, "digest", "zkop"), (1, "world", "anyone")}
    for ident in (web, legacy):
        ns, app = ident.namespace, ident.app
        for path in (base, f"{base}/{ns}", registry.service_path(root, ns, app)):
            assert acl_summary((await zk_client.get_acls(path))[0]) == closed, path
        for path in (registry.endpoints_path(root, ns, app), registry.load_path(root, ns, app)):
            assert acl_summary((await zk_client.get_acls(path))[0]) == closed | {(12, "digest", ident.user)}, path
    # The hole is closed: the writes that worked before are refused now.
    refused(lambda: anon.create(f"{registry.endpoints_path(root, 'default', 'web')}/evil", b"{}"))
    refused(lambda: anon.create(f"{registry.endpoints_path(root, 'default', 'legacy')}/evil", b"{}"))
    refused(lambda: anon.create(f"{base}/default/evilsvc"))
    refused(lambda: anon.create(f"{base}/evilns"))
    # What was registered stays (an endpoint's own ACL is its creator's business).
    assert [i.id for i in await registry.list_endpoints(zk_client, root, "default", "legacy")] == ["old"]


async def test_close_open_folders_closes_every_service(
    zk_client: ZkClient, connection: Connection, kazoo_factory: Callable[..., KazooClient]
) -> None:
    """Folders of services the operator does not run (never ensured) are closed too."""
    root, owner = connection.root, connection.acl()
    base = registry.services_path(root)
    await zk_client.ensure_path(f"{base}/other", acl=[*owner, WORLD_READ_CREATE])
    granted = await registry.ensure_service(zk_client, root, "default", "web", owner)
    await zk_client.set_acls(f"{base}/default", [*owner, WORLD_READ_CREATE])  # as an older version left it
    anon = kazoo_factory()
    legacy = registry.service_path(root, "other", "legacy")
    for path in (legacy, f"{legacy}/endpoints", f"{legacy}/load"):
        anon.create(path, b"", acl=[WORLD_ALL])
    squatter = kazoo_factory("squatter:pw")
    squatter.create(registry.service_path(root, "other", "taken"), b"", acl=[WORLD_READ_CREATE, registry.OWNER_ALL])

    problems = await registry.close_open_folders(zk_client, root, owner)

    assert len(problems) == 1 and "/other/taken" in problems[0] and "deleteall" in problems[0], problems
    closed = {(31, "digest", "zkop"), (1, "world", "anyone")}
    for path in (base, f"{base}/default", f"{base}/other", legacy, f"{legacy}/endpoints", f"{legacy}/load"):
        assert acl_summary((await zk_client.get_acls(path))[0]) == closed, path
    # A service identity's rights stay.
    web_eps = registry.endpoints_path(root, "default", "web")
    assert acl_summary((await zk_client.get_acls(web_eps))[0]) == closed | {(12, "digest", granted.user)}
    refused(lambda: anon.create(f"{legacy}/endpoints/evil", b"{}"))
    refused(lambda: anon.create(f"{base}/other/evilsvc"))
    refused(lambda: anon.create(f"{base}/default/evilsvc"))
    assert await registry.close_open_folders(zk_client, root, owner) == problems, "idempotent"


async def test_a_folder_the_operator_cannot_repair_is_reported(
    zk_client: ZkClient, connection: Connection, kazoo_factory: Callable[..., KazooClient]
) -> None:
    root, owner = connection.root, connection.acl()
    await zk_client.ensure_path(f"{registry.services_path(root)}/default", acl=[*owner, WORLD_READ_CREATE])
    # An older authenticated self-registration owned its folders: no ADMIN right for the operator.
    squatter = kazoo_factory("squatter:pw")
    squatter.create(registry.service_path(root, "default", "taken"), b"", acl=[WORLD_READ_CREATE, registry.OWNER_ALL])
    with pytest.raises(RegistryError, match=r"cannot repair the ACL of .*/default/taken.*deleteall"):
        await registry.ensure_service(zk_client, root, "default", "taken", owner)


# ---- the counter Application passes its identity on ------------------------------------------
# (test_applications.py: test_autoscale_up_and_down_on_reported_load drives load through
#  the counter's identity; this checks the example's own session and ACL without an operator)


async def test_counter_reports_load_with_its_identity(
    zk_client: ZkClient, connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zkop.examples.counter import Counter

    identity = await registry.ensure_service(zk_client, connection.root, "default", "counter", connection.acl())
    for key, value in {
        "ZKOP_REGISTRY_HOSTS": connection.hosts,
        "ZKOP_REGISTRY_ROOT": connection.root,
        "ZKOP_REGISTRY_AUTH": identity.credentials,
        "ZKOP_NAMESPACE": "default",
        "ZKOP_APP": "counter",
        "ZKOP_INSTANCE": "counter-1",
        "LOAD": "2.5",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ZK_HOSTS", raising=False)
    counter = await asyncio.to_thread(Counter)
    try:
        assert await registry.read_loads(zk_client, connection.root, "default", "counter") == {"counter-1": 2.5}
        path = f"{registry.load_path(connection.root, 'default', 'counter')}/counter-1"
        acl, _ = await zk_client.get_acls(path)
        assert acl_summary(acl) == {(31, "digest", identity.user), (1, "world", "anyone")}
    finally:
        assert counter.registry is not None
        await asyncio.to_thread(counter.registry.stop)
        await asyncio.to_thread(counter.registry.close)


# ---- zkop registry ---------------------------------------------------------------------------


class Cli:
    def __init__(self, conn: Connection, state_dir: Path) -> None:
        self.conn = conn
        self.env = {
            "ZKOP_ZK": conn.hosts,
            "ZKOP_AUTH": f"{conn.user}:{conn.password}",
            "ZKOP_ROOT": conn.root,
            "ZKOP_STATE_DIR": str(state_dir),
        }

    def __call__(self, *args: str) -> Result:
        return CliRunner().invoke(cli_app, ["registry", *args], env=self.env)

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result


@pytest.fixture
def cli(connection: Connection, tmp_path: Path) -> Cli:
    return Cli(connection, tmp_path / "state")


def assert_refused(result: Result, *needles: str) -> None:
    """One clear line on stderr, a non-zero exit, no traceback."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith("error:") and result.stderr.count("\n") == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def list_rows(cli: Cli) -> dict[str, dict[str, Any]]:
    return {row["service"]: row for row in json.loads(cli.ok("list", "-o", "json").stdout)}


async def test_zkop_registry_grant_list_revoke(cli: Cli, connection: Connection, zk_client: ZkClient) -> None:
    # grant: the ZKOP_REGISTRY_AUTH value alone on stdout; the same identity when granted again.
    granted = await asyncio.to_thread(cli.ok, "grant", "default/legacy")
    auth = granted.stdout.strip()
    assert auth.startswith("svc/default/legacy:") and "\n" not in auth
    assert "granted" in granted.stderr and "ZKOP_REGISTRY_AUTH" in granted.stderr
    again = await asyncio.to_thread(cli.ok, "grant", "legacy", "-o", "json")  # a bare APP: namespace default
    data = json.loads(again.stdout)
    assert data["ZKOP_REGISTRY_AUTH"] == auth and data["created"] is False and data["user"] == "svc/default/legacy"

    async with AsyncServiceDiscovery(connection.hosts, root=connection.root) as sd:
        reg = await sd.register("default", "legacy", inst(1), credentials=auth)
        await reg.report_load(1.0)
        rows = await asyncio.to_thread(list_rows, cli)
        assert rows["default/legacy"] == {
            "service": "default/legacy",
            "endpoints": 1,
            "loads": 1,
            "granted": True,
            "application": False,
            "writers": ["svc/default/legacy"],
        }
        table = (await asyncio.to_thread(cli.ok, "list")).stdout
        assert "SERVICE" in table and "default/legacy" in table and "svc/default/legacy" in table

        # revoke while registered: the identity goes at once, the folders stay until it leaves.
        revoked = await asyncio.to_thread(cli.ok, "revoke", "default/legacy")
        assert "identity svc/default/legacy revoked" in revoked.stdout
        assert "kept the registry folders" in revoked.stderr and "1 endpoint(s)" in revoked.stderr
        with pytest.raises(RegistryError, match="refused"):
            await sd.register("default", "legacy", inst(2), credentials=auth)
        rows = await asyncio.to_thread(list_rows, cli)
        assert rows["default/legacy"]["granted"] is False and rows["default/legacy"]["writers"] == []
        await reg.unregister()

    removed = await asyncio.to_thread(cli.ok, "revoke", "default/legacy")
    assert "registry folders removed" in removed.stdout
    assert await zk_client.exists(registry.service_path(connection.root, "default", "legacy")) is None
    assert await zk_client.exists(registry.credentials_path(connection.root, "default", "legacy")) is None
    assert_refused(await asyncio.to_thread(cli, "revoke", "default/legacy"), "nothing to revoke")
    assert "default/legacy" not in await asyncio.to_thread(list_rows, cli)


async def test_zkop_registry_grant_to_a_secret_file(cli: Cli, tmp_path: Path) -> None:
    secret = tmp_path / "legacy.auth"
    secret.write_text("old")
    secret.chmod(0o644)
    result = await asyncio.to_thread(cli.ok, "grant", "ops/legacy", "--secret-file", str(secret))
    assert "svc/ops/legacy:" not in result.stdout, "the secret is not printed"
    assert str(secret) in result.stdout
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    value = secret.read_text().strip()
    assert value.startswith("svc/ops/legacy:")
    data = json.loads((await asyncio.to_thread(cli.ok, "grant", "ops/legacy", "-o", "json")).stdout)
    assert data["ZKOP_REGISTRY_AUTH"] == value


async def test_zkop_registry_refuses_bad_input_and_writes_nothing(
    cli: Cli, connection: Connection, zk_client: ZkClient, store: Store, tmp_path: Path
) -> None:
    for args, needle in (
        (("grant", "nonsense//x"), "is not NAMESPACE/APP"),
        (("grant", "ns/a:b"), "cannot contain ':'"),
        (("grant", "default/ok", "--secret-file", str(tmp_path / "missing" / "f")), "does not exist"),
        (("grant", "default/ok", "--secret-file", str(tmp_path)), "is a directory"),
        (("revoke", "a/b/c"), "is not NAMESPACE/APP"),
        (("list", "-n", "a/b"), "namespace 'a/b' is not a valid znode name"),
    ):
        assert_refused(await asyncio.to_thread(cli, *args), needle)
    with pytest.raises(NoNodeError):
        await zk_client.get_children(connection.root)  # nothing was written, not even the root
    # An application zkop runs keeps its identity until the application goes.
    obj = parse_object(
        {
            "apiVersion": "zkop.io/v1",
            "kind": "Application",
            "metadata": {"name": "counter"},
            "spec": {"template": {"command": ["true"]}},
        }
    )
    await store.create(obj)
    await asyncio.to_thread(cli.ok, "grant", "default/counter")
    assert_refused(await asyncio.to_thread(cli, "revoke", "default/counter"), "which zkop runs", "zkop delete app")
    assert await zk_client.exists(registry.credentials_path(connection.root, "default", "counter")) is not None
