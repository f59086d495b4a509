"""The pure parts of zkop.discovery: endpoint data, names, picking with exclusions, calls."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kazoo.security import Permissions

from zkop.cli.proxy import parse_listen
from zkop.discovery import DownInstancePolicy, Instance, NoInstanceError, ServiceCache, ServiceProvider, registry
from zkop.errors import ZkopError


def cache_with(*instances: Instance) -> ServiceCache:
    cache = ServiceCache(cast(Any, None), "/zkop", "default", "web")  # no client needed to pick
    cache._publish({i.id: i for i in instances}, {})
    return cache


def inst(i: int) -> Instance:
    return Instance(f"i{i}", "127.0.0.1", 40000 + i)


# ---- endpoint data ------------------------------------------------------------------------


@given(
    ident=st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=20),
    host=st.sampled_from(["127.0.0.1", "::1", "svc.example"]),
    port=st.integers(1, 65535),
    payload=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
)
def test_encode_decode_round_trip(ident: str, host: str, port: int, payload: dict[str, Any]) -> None:
    original = Instance(ident, host, port, payload)
    assert registry.decode(registry.encode(original), ident) == original


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b"null",
        b'{"id": "a", "host": "h"}',
        b'{"id": "a", "host": "h", "port": "80"}',
        b'{"id": "a", "host": "h", "port": 0}',
        b'{"id": "a", "host": "h", "port": true}',
        b'{"id": "a", "host": "", "port": 80}',
        b'{"id": "a", "host": "h", "port": 80, "payload": [1]}',
        b"[" * 100_000,
    ],
)
def test_decode_refuses_what_is_not_an_endpoint(raw: bytes) -> None:
    assert registry.decode(raw) is None


def test_decode_refuses_an_id_that_is_not_the_znode_name() -> None:
    raw = registry.encode(inst(1))
    assert registry.decode(raw, "i1") == inst(1)
    assert registry.decode(raw, "i2") is None
    assert "registeredAt" in json.loads(raw)


def test_parse_service() -> None:
    assert registry.parse_service("ns/app") == ("ns", "app")
    assert registry.parse_service("app") == ("default", "app")
    for bad in ("", "/app", "ns/", "a/b/c", "ns/..", "ns/a\0b"):
        with pytest.raises(ValueError, match="NAMESPACE/APP"):
            registry.parse_service(bad)


def test_creator_acl() -> None:
    # No anonymous variant: a service writes only with its identity, named by the auth scheme.
    assert registry.creator_acl() == [registry.WORLD_READ, registry.OWNER_ALL]


def test_service_identity() -> None:
    ident = registry.ServiceIdentity("default", "legacy", "s3cret")
    assert ident.user == "svc/default/legacy"
    assert ident.credentials == "svc/default/legacy:s3cret"
    assert ident.auth_data == [("digest", "svc/default/legacy:s3cret")]
    assert "s3cret" not in repr(ident), "the password never shows in logs or tracebacks"
    assert registry.ServiceIdentity.from_json("default", "legacy", ident.to_json()) == ident
    # Data that is not this service's identity is refused, never taken.
    assert registry.ServiceIdentity.from_json("default", "other", ident.to_json()) is None
    for raw in (
        b"",
        b"{}",
        b"[1]",
        b'{"user": "svc/default/legacy"}',
        b'{"user": "svc/default/legacy", "password": ""}',
    ):
        assert registry.ServiceIdentity.from_json("default", "legacy", raw) is None
    perms = ident.folder_acl().perms
    assert perms == Permissions.CREATE | Permissions.DELETE, "add and remove children, nothing else"


def test_service_user_and_credentials() -> None:
    assert registry.service_user("ns", "app") == "svc/ns/app"
    with pytest.raises(ValueError, match="cannot contain ':'"):
        registry.service_user("ns", "a:b")
    with pytest.raises(ValueError, match="not a valid znode name"):
        registry.service_user("ns", "")
    assert registry.parse_credentials("svc/ns/app:pw:with:colons") == ("svc/ns/app", "pw:with:colons")
    for bad in ("", "user", "user:", ":pw"):
        with pytest.raises(ValueError, match="USER:PASSWORD"):
            registry.parse_credentials(bad)
    with pytest.raises(ValueError) as info:
        registry.parse_credentials("no-colon-secret")
    assert "no-colon-secret" not in str(info.value), "what may be a secret is not echoed"


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen(":0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    for bad in ("8080", "host:", "host:http", "host:70000"):
        with pytest.raises(ZkopError, match="HOST:PORT"):
            parse_listen(bad)


# ---- providers ------------------------------------------------------------------------------


def test_provider_follows_the_cache_and_excludes() -> None:
    cache = cache_with(inst(1), inst(2))
    provider = ServiceProvider(cache, "round_robin")
    assert {provider.get_instance().id for _ in range(4)} == {"i1", "i2"}  # type: ignore[union-attr]
    cache._publish({"i3": inst(3)}, {})
    assert provider.get_instance() == inst(3)
    cache._publish({i.id: i for i in (inst(1), inst(2), inst(3))}, {})
    tried = {"i1", "i2"}
    got = provider.acquire(exclude=tried)
    assert got == inst(3)
    provider.release(got, ok=None)
    assert provider.acquire(exclude={"i1", "i2", "i3"}) is None
    provider.close()
    cache._publish({}, {})
    assert provider.instances() == [] and provider.get_instance() is not None, "a closed provider keeps its view"


def test_exclusion_applies_before_the_down_policy() -> None:
    now = [0.0]
    policy = DownInstancePolicy(error_threshold=1, down_for=10, clock=lambda: now[0])
    provider = ServiceProvider(cache_with(inst(1), inst(2)), "round_robin", policy)
    provider.note_error(inst(2))
    assert all(provider.get_instance() == inst(1) for _ in range(4))
    # With i1 tried already, the only candidate left is down: the policy fails open.
    assert provider.acquire(exclude={"i1"}) == inst(2)


def test_call_notes_success_error_or_neither() -> None:
    now = [0.0]
    policy = DownInstancePolicy(error_threshold=2, down_for=10, clock=lambda: now[0])
    provider = ServiceProvider(cache_with(inst(1)), "least_connections", policy)
    strategy: Any = provider.strategy
    with provider.call() as chosen:
        assert chosen == inst(1) and strategy.in_flight(chosen) == 1
    assert strategy.in_flight(inst(1)) == 0
    with pytest.raises(OSError), provider.call():
        raise OSError("reset")
    assert not provider.is_down(inst(1))
    with provider.call() as chosen:
        provider.note_error(chosen)  # noted by hand: the clean exit must not clear it
    assert provider.is_down(inst(1)), "two errors in a row"
    now[0] += 11
    with pytest.raises(KeyboardInterrupt), provider.call():
        raise KeyboardInterrupt
    assert strategy.in_flight(inst(1)) == 0 and not provider.is_down(inst(1))


async def test_async_call_and_no_instance() -> None:
    provider = ServiceProvider(cache_with(), "random")
    with pytest.raises(NoInstanceError, match="has no endpoint") as info:
        async with provider.call("k"):
            pass
    assert isinstance(info.value, LookupError) and "is the application running" in str(info.value)
    with pytest.raises(NoInstanceError):
        await provider.aget_instance(timeout=0.05)
    provider.cache._publish({"i1": inst(1)}, {})
    async with provider.call("k") as chosen:
        assert chosen == inst(1)
    assert await provider.aget_instance() == inst(1)


def test_cache_listeners_and_versions() -> None:
    cache = cache_with(inst(1))
    seen: list[list[str]] = []
    cache.listeners.append(lambda xs: seen.append([x.id for x in xs]))
    cache.listeners.append(lambda xs: 1 / 0)  # a failing listener does not stop the others
    version = cache.version
    cache._publish({"i1": inst(1)}, {})  # no change: no notification
    cache._publish({"i2": inst(2), "i1": inst(1)}, {"junk": "not an endpoint"})
    assert seen == [["i1", "i2"]] and cache.version == version + 1
    assert cache.skipped == {"junk": "not an endpoint"}


# ---- modules --------------------------------------------------------------------------------


def test_the_first_import_path_keeps_working() -> None:
    import zkop.discovery
    from zkop.discovery import client

    for name in client.__all__:
        assert getattr(client, name) is getattr(zkop.discovery, name)
    assert not hasattr(ServiceProvider, "wait_instance")  # the old alias of aget_instance is gone
