"""The dashboard's data gathering (pure views, the samples behind the plots), its token check,
and its HTTP side on a real socket (no ZooKeeper needed)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from zkop.api import Application, ZookeeperCluster, parse_object
from zkop.api.meta import Condition
from zkop.dashboard import views
from zkop.dashboard.auth import Guard, host_of, is_loopback, parse_listen
from zkop.dashboard.feed import Feed
from zkop.dashboard.http import DashboardHTTP
from zkop.errors import ValidationError
from zkop.runtime.http import HealthServer
from zkop.store import EventRecord

AT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def cluster(**status: Any) -> ZookeeperCluster:
    obj = parse_object(
        {
            "apiVersion": "zkop.io/v1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": "orders-zk", "namespace": "shop", "generation": 2},
            "spec": {"replicas": 5},
            "status": status,
        }
    )
    assert isinstance(obj, ZookeeperCluster)
    return obj


def application(*, autoscaling: dict[str, Any] | None = None, **status: Any) -> Application:
    spec: dict[str, Any] = {"replicas": 2, "template": {"command": ["sleep", "60"], "ports": [{"name": "http"}]}}
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    obj = parse_object(
        {
            "apiVersion": "zkop.io/v1",
            "kind": "Application",
            "metadata": {"name": "counter", "namespace": "shop"},
            "spec": spec,
            "status": status,
        }
    )
    assert isinstance(obj, Application)
    return obj


def event(kind: str, name: str, reason: str, message: str, at: str, *, ns: str = "shop", type_: str = "Normal"):
    return EventRecord(type_, reason, message, kind, ns, name, 1, at, at, "replica-1")


# ---- views: ZookeeperClusters -------------------------------------------------------


def test_a_cluster_shows_its_members_config_version_action_and_timeline() -> None:
    obj = cluster(
        phase="Updating",
        replicas=3,
        readyReplicas=2,
        leader=3,
        configVersion="0x100000004",
        observedGeneration=2,
        members=[
            {"id": 3, "role": "leader", "ready": True, "zxid": 4294967300, "restarts": 0, "latencyMs": 0.5},
            {"id": 1, "role": "down", "ready": False, "restarts": 2, "clientEndpoint": "127.0.0.1:2181"},
        ],
        conditions=[
            Condition(
                type="Progressing", status="True", reason="AddMember", message="add member 4", last_transition_time=AT
            ).model_dump(by_alias=True),
        ],
    )
    events = [
        event("ZookeeperCluster", "orders-zk", "Healed", "restarted member 1", "2026-01-02T03:04:01.000Z"),
        event("ZookeeperCluster", "other", "Created", "not this one", "2026-01-02T03:04:02.000Z"),
        event("Application", "orders-zk", "Created", "another kind", "2026-01-02T03:04:03.000Z"),
        event("ZookeeperCluster", "orders-zk", "MemberStarting", "started member 4", "2026-01-02T03:04:04.000Z"),
    ]
    view = views.cluster_view(obj, events)
    assert view["key"] == "shop/orders-zk"
    assert (view["phase"], view["desired"], view["replicas"], view["ready"], view["leader"]) == ("Updating", 5, 3, 2, 3)
    assert view["configVersion"] == "0x100000004"
    assert view["now"] == {
        "busy": True,
        "action": "AddMember",
        "message": "add member 4",
        "since": "2026-01-02T03:04:05Z",
    }
    assert [m["id"] for m in view["members"]] == [1, 3]  # by id
    down, leader = view["members"]
    assert down == {
        "id": 1,
        "role": "down",
        "ready": False,
        "zxid": None,
        "latencyMs": None,
        "outstanding": None,
        "restarts": 2,
        "endpoint": "127.0.0.1:2181",
    }
    assert leader["zxid"] == "0x100000004" and leader["latencyMs"] == 0.5
    assert [e["reason"] for e in view["events"]] == ["Healed", "MemberStarting"]


def test_a_cluster_not_reconciled_yet_and_an_idle_one() -> None:
    assert views.cluster_view(cluster(), [])["now"] == {"busy": False, "action": None, "message": "not reconciled yet"}
    assert views.cluster_view(cluster(), [])["phase"] == "Pending"
    done = Condition(type="Progressing", status="False", reason="Done", message=None, last_transition_time=AT)
    now = views.now_doing([done])
    assert now["busy"] is False and now["message"] == "Done"


def test_a_timeline_keeps_the_newest_events_of_the_object() -> None:
    events = [
        event("ZookeeperCluster", "orders-zk", f"R{i}", "m", f"2026-01-02T03:{i // 60:02d}:{i % 60:02d}.000Z")
        for i in range(views.OBJECT_EVENTS + 5)
    ]
    shown = views.cluster_view(cluster(), events)["events"]
    assert len(shown) == views.OBJECT_EVENTS and shown[-1]["reason"] == f"R{views.OBJECT_EVENTS + 4}"


# ---- views: Applications ------------------------------------------------------------


def test_an_application_shows_instances_with_revision_and_endpoint() -> None:
    app = application(
        replicas=3,
        readyReplicas=2,
        updatedReplicas=2,
        desiredReplicas=3,
        currentMetric=12.5,
        instances=[
            {"name": "counter-1", "phase": "Running", "ready": True, "port": 8001, "restarts": 1},
            {"name": "counter-2", "phase": "Running", "ready": True, "port": 8002},
            {"name": "counter-3", "phase": "Starting", "ready": False, "port": 8003},
        ],
        endpoints=["127.0.0.1:8001", "127.0.0.1:8002"],
    )
    view = views.app_view(
        app, [], [], revision="abc", instance_revisions={"counter-1": "abc", "counter-2": "old", "gone": "x"}
    )
    rows = {i["name"]: i for i in view["instances"]}
    assert rows["counter-1"]["endpoint"] == "127.0.0.1:8001" and rows["counter-1"]["restarts"] == 1
    assert (rows["counter-1"]["revision"], rows["counter-1"]["current"]) == ("abc", True)
    assert (rows["counter-2"]["revision"], rows["counter-2"]["current"]) == ("old", False)
    assert rows["counter-3"]["endpoint"] is None and rows["counter-3"]["port"] == 8003  # not registered yet
    assert rows["counter-3"]["revision"] is None and rows["counter-3"]["current"] is None
    assert (view["desired"], view["replicas"], view["ready"], view["updated"]) == (3, 3, 2, 2)
    assert view["currentMetric"] == 12.5 and view["autoscaling"] is None


def test_load_against_its_target_and_the_autoscalers_decisions() -> None:
    app = application(
        autoscaling={"minReplicas": 2, "maxReplicas": 6, "metrics": [{"type": "load", "targetValue": 10}]},
        replicas=2,
        currentMetric=25.0,
    )
    events = [
        event("Application", "counter", "Scaled", "replicas 2 -> 5: scale up", "2026-01-02T03:04:01.000Z"),
        event("Application", "counter", "Created", "counter-3", "2026-01-02T03:04:02.000Z"),
        event("Application", "counter", "Scaled", "something else", "2026-01-02T03:04:03.000Z"),
    ]
    history = views.History()
    history.record(app.key, views.sample_of(app, 100.0))
    view = views.app_view(app, events, history.samples(app.key))
    assert view["autoscaling"] == {
        "min": 2,
        "max": 6,
        "targets": [{"type": "load", "value": 10.0, "label": "load 10"}],
    }
    assert view["scaled"] == [
        {"at": "2026-01-02T03:04:01.000Z", "from": 2, "to": 5, "message": "replicas 2 -> 5: scale up"},
        {"at": "2026-01-02T03:04:03.000Z", "from": None, "to": None, "message": "something else"},
    ]
    assert view["history"] == [[100000, 25.0, 2, 0, 2]]  # ms, metric, replicas, ready, desired (spec: no status yet)
    cpu = application(autoscaling={"maxReplicas": 3})
    assert views.targets_of(cpu) == [{"type": "cpu", "value": 80.0, "label": "cpu 80%"}]


def test_history_keeps_changes_drops_repeats_and_forgets_the_old() -> None:
    h = views.History(window=60.0, min_gap=1.0)
    s = views.Sample
    h.record("a", s(0.0, 1.0, 2, 2, 2))
    h.record("a", s(0.5, 1.0, 2, 2, 2))  # a repeat within the gap
    assert [x.at for x in h.samples("a")] == [0.0]
    h.record("a", s(0.7, 3.0, 2, 2, 2))  # a change within the gap replaces the last sample
    assert [(x.at, x.metric) for x in h.samples("a")] == [(0.7, 3.0)]
    h.record("a", s(2.0, 3.0, 2, 2, 2))  # a repeat after the gap is kept: the plot moves on
    h.record("a", s(1.0, 9.0, 2, 2, 2))  # out of order: ignored
    assert [x.at for x in h.samples("a")] == [0.7, 2.0]
    h.record("a", s(61.5, 3.0, 3, 3, 3))
    assert [x.at for x in h.samples("a")] == [2.0, 61.5]  # older than the window: gone
    h.record("b", s(0.0, None, 0, 0, None))
    h.keep_only(["b"])
    assert h.samples("a") == [] and len(h.samples("b")) == 1


def test_plots_get_a_bounded_number_of_samples_the_newest_among_them() -> None:
    samples = [views.Sample(float(i), None, 1, 1, 1) for i in range(1000)]
    thinned = views.thin(samples, 300)
    assert len(thinned) == 300 and thinned[0].at == 0.0 and thinned[-1].at == 999.0
    assert [x.at for x in thinned] == sorted(x.at for x in thinned)
    assert views.thin(samples[:5], 300) == samples[:5]


# ---- views: the control plane, all events, the snapshot ---------------------------------


def test_operator_and_local_control_plane() -> None:
    op = views.operator_view("zkop-operator", "replica-2", 3, 1767322800.0, ["replica-2", "replica-1"])
    assert op == {
        "manager": "zkop-operator",
        "replicas": 2,
        "candidates": ["replica-2", "replica-1"],
        "leader": "replica-2",
        "epoch": 3,
        "since": "2026-01-02T03:00:00Z",
    }
    assert views.operator_view("m", None, None, None, [])["since"] is None
    local = views.local_view(
        {
            "ensemble": "control-plane",
            "connectionString": "127.0.0.1:1,127.0.0.1:2",
            "desiredMembers": 3,
            "keeper": {"pid": 42, "identity": "keeper", "since": 1.0},
            "events": [{"type": "Normal", "reason": "Healed", "message": "member 1", "lastTimestamp": "t"}],
            "members": [
                {"myid": 1, "pid": 10, "clientEndpoint": "127.0.0.1:1", "role": "leader", "zxid": "0x1", "restarts": 1},
                {"myid": 2, "pid": None, "clientEndpoint": "127.0.0.1:2", "role": "down", "zxid": None, "restarts": 0},
            ],
        }
    )
    assert local["keeper"] == {"identity": "keeper", "pid": 42}
    assert [(m["id"], m["ready"], m["role"], m["restarts"]) for m in local["members"]] == [
        (1, True, "leader", 1),
        (2, False, "down", 0),
    ]
    assert local["events"][0]["reason"] == "Healed" and local["events"][0]["count"] == 1
    assert views.local_view({"keeper": None})["keeper"] is None


def test_events_everywhere_newest_first_with_what_to_filter_by() -> None:
    events = [
        event("ZookeeperCluster", "a", "Created", "1", "2026-01-02T03:04:01.000Z"),
        event("Application", "b", "Scaled", "2", "2026-01-02T03:04:03.000Z", ns="web", type_="Warning"),
        event("ControlPlane", "cp", "Healed", "3", "2026-01-02T03:04:02.000Z", ns="zkop-system"),
    ]
    data = views.all_events(events, limit=2)
    assert [e["message"] for e in data["items"]] == ["2", "3"]
    assert data["namespaces"] == ["shop", "web", "zkop-system"]
    assert data["kinds"] == ["Application", "ControlPlane", "ZookeeperCluster"]


def test_the_snapshot_is_json_and_sorted() -> None:
    history = views.History()
    data = views.snapshot(
        clusters=[cluster()],
        apps=[application()],
        events=[],
        history=history,
        operator=None,
        local=None,
        connection={"hosts": "h:1", "root": "/zkop", "state": "CONNECTED"},
        revisions={"shop/counter": "abc"},
        errors=["one"],
    )
    assert json.loads(json.dumps(data)) == data
    assert data["applications"][0]["revision"] == "abc"
    assert data["controlPlane"] == {"operator": None, "local": None}
    assert data["errors"] == ["one"]


# ---- the token check and --listen -------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:8481", ("127.0.0.1", 8481)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        (":9000", ("127.0.0.1", 9000)),
        ("9000", ("127.0.0.1", 9000)),
        ("localhost", ("localhost", 8481)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::]", ("::", 8481)),
        (" host.example:80 ", ("host.example", 80)),
    ],
)
def test_listen_addresses(given: str, expected: tuple[str, int]) -> None:
    assert parse_listen(given) == expected


@pytest.mark.parametrize(
    "given", ["", "host:", "host:http", "host:70000", "::1:80", "[::1", "[::1]80", "a b:1", "h/x:1"]
)
def test_bad_listen_addresses_are_refused(given: str) -> None:
    with pytest.raises(ValidationError, match="invalid --listen"):
        parse_listen(given)


def test_loopback() -> None:
    for host in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "example.com", "localhost.example.com"):
        assert not is_loopback(host), host
    assert host_of("localhost:8481") == "localhost"
    assert host_of("[::1]:8481") == "::1"
    assert host_of("::1") == "::1"


def test_open_on_loopback_only_to_loopback_host_names() -> None:
    guard = Guard(None)
    assert guard.check({"host": "127.0.0.1:8481"}, {}) is None
    assert guard.check({"host": "localhost:8481"}, {}) is None
    assert guard.check({}, {}) is None  # HTTP/1.0: no Host header
    denied = guard.check({"host": "evil.example:8481"}, {})
    assert denied is not None and denied.status == 403 and "loopback" in denied.message
    assert guard.set_cookie() is None


def test_a_token_is_checked_from_header_query_or_cookie() -> None:
    guard = Guard("s3cret-token-123", cookie_name="zkop_dashboard_8481")
    missing = guard.check({"host": "box:8481"}, {})
    assert missing is not None and missing.status == 401 and "?token=" in missing.message
    wrong = guard.check({}, {"token": "nope"})
    assert wrong is not None and wrong.status == 403
    assert guard.check({"authorization": "Bearer s3cret-token-123"}, {}) is None
    assert guard.check({"authorization": "bearer s3cret-token-123"}, {}) is None
    assert guard.check({}, {"token": "s3cret-token-123"}) is None
    assert guard.check({"cookie": "a=b; zkop_dashboard_8481=s3cret-token-123"}, {}) is None
    other_port = guard.check({"cookie": "zkop_dashboard_9999=s3cret-token-123"}, {})
    assert other_port is not None and other_port.status == 401
    assert guard.check({"authorization": "Basic s3cret-token-123"}, {}) is not None
    bad_cookie = guard.check({"cookie": 'zkop_dashboard_8481="unterminated'}, {})
    assert bad_cookie is not None
    assert guard.set_cookie() == "zkop_dashboard_8481=s3cret-token-123; Path=/; HttpOnly; SameSite=Strict"


# ---- the feed ---------------------------------------------------------------------------


async def test_the_feed_publishes_changes_only_and_wakes_streams() -> None:
    feed = Feed()
    assert feed.publish({"a": 1}) and feed.version == 1
    assert not feed.publish({"a": 1})  # the same snapshot is no change
    assert feed.payload is not None and json.loads(feed.payload)["a"] == 1
    assert await feed.wait(0, 0.01)
    assert not await feed.wait(1, 0.01)
    waiter = asyncio.create_task(feed.wait(1, 5.0))
    await asyncio.sleep(0)
    feed.publish({"a": 2})
    assert await waiter and json.loads(feed.payload or b"")["version"] == 2
    waiter = asyncio.create_task(feed.wait(2, 5.0))
    await asyncio.sleep(0)
    feed.close()
    assert await waiter and feed.closed


# ---- HTTP on a real socket ------------------------------------------------------------


async def request(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = {"Host": f"127.0.0.1:{port}", **(headers or {})}
    writer.write(
        (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n").encode()
    )
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    top, _, body = raw.partition(b"\r\n\r\n")
    lines = top.decode().split("\r\n")
    got = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), got, body


@pytest.fixture
async def served() -> AsyncIterator[tuple[Feed, DashboardHTTP, int]]:
    feed = Feed()
    web = DashboardHTTP(feed, Guard(None), heartbeat=0.2)
    server = await asyncio.start_server(web.connection, "127.0.0.1", 0)
    try:
        yield feed, web, server.sockets[0].getsockname()[1]
    finally:
        feed.close()
        server.close()


async def test_the_page_and_its_assets_come_from_the_package(served: tuple[Feed, DashboardHTTP, int]) -> None:
    feed, _, port = served
    status, headers, body = await request(port, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'src="app.js"' in body and b"http" not in body.replace(b"http-equiv", b"")  # nothing from elsewhere
    assert "default-src 'self'" in headers["content-security-policy"]
    for asset in ("/app.js", "/style.css", "/favicon.svg"):
        status, _, body = await request(port, asset)
        assert status == 200 and body, asset
    assert (await request(port, "/api/snapshot"))[0] == 503  # nothing gathered yet
    feed.publish({"clusters": []})
    status, headers, body = await request(port, "/api/snapshot")
    assert status == 200 and json.loads(body)["clusters"] == []
    assert (await request(port, "/nope"))[0] == 404
    assert (await request(port, "/", method="POST"))[0] == 405
    status, headers, body = await request(port, "/", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    assert (await request(port, "/", {"Host": "attacker.example"}))[0] == 403


async def read_event(reader: asyncio.StreamReader) -> dict[str, Any]:
    while True:
        line = await asyncio.wait_for(reader.readline(), 5)
        assert line, "the stream ended"
        if line.startswith(b"data: "):
            return json.loads(line[6:])  # type: ignore[no-any-return]


async def test_the_event_stream_pushes_every_change(served: tuple[Feed, DashboardHTTP, int]) -> None:
    feed, _, port = served
    feed.publish({"n": 1})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /events HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b"200 OK" in head and b"text/event-stream" in head
    assert (await read_event(reader))["n"] == 1
    feed.publish({"n": 2})
    assert (await read_event(reader))["n"] == 2
    assert await asyncio.wait_for(reader.readuntil(b": ping\n\n"), 5)  # a heartbeat while idle
    writer.close()


async def test_beyond_loopback_every_request_needs_the_token(served: tuple[Feed, DashboardHTTP, int]) -> None:
    feed, web, port = served
    web.guard = Guard("tok-0123456789ab", cookie_name="zkop_dashboard_test")
    feed.publish({"n": 1})
    for path in ("/", "/app.js", "/api/snapshot", "/events"):
        status, _, body = await request(port, path)
        assert status == 401 and b"needs a token" in body, path
        assert (await request(port, path + "?token=wrong"))[0] == 403, path
    status, headers, _ = await request(port, "/?token=tok-0123456789ab", {"Host": "box.example"})
    assert status == 200 and headers["set-cookie"].startswith("zkop_dashboard_test=tok-0123456789ab;")
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    assert (await request(port, "/style.css", {"Cookie": "zkop_dashboard_test=tok-0123456789ab"}))[0] == 200
    assert (await request(port, "/api/snapshot", {"Authorization": "Bearer tok-0123456789ab"}))[0] == 200
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /events?token=tok-0123456789ab HTTP/1.1\r\nHost: box.example\r\n\r\n")
    assert (await read_event(reader))["n"] == 1
    writer.close()


async def test_the_operator_health_port_hands_other_paths_to_the_dashboard() -> None:
    feed = Feed()
    feed.publish({"n": 7})
    web = DashboardHTTP(feed, Guard(None))
    health = HealthServer(CollectorRegistry(), ready=lambda: True, fallback=web.handle)
    port = await health.start()
    try:
        assert (await request(port, "/healthz"))[2] == b"ok\n"
        assert (await request(port, "/metrics"))[0] == 200
        status, _, body = await request(port, "/api/snapshot")
        assert status == 200 and json.loads(body)["n"] == 7
        assert b'src="app.js"' in (await request(port, "/"))[2]
    finally:
        feed.close()
        await health.stop()
    plain = HealthServer(CollectorRegistry(), ready=lambda: True)
    port = await plain.start()
    try:
        assert (await request(port, "/"))[0] == 404  # without --dashboard nothing else is served
    finally:
        await plain.stop()


# ---- the command's one-line errors ---------------------------------------------------------


def zkop(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ZKOP_AUTH="zkop:pw", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "zkop.cli.main", "dashboard", "--zk", "127.0.0.1:1", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_a_taken_port_and_a_bad_listen_are_one_line_errors() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = zkop("--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use (another process uses that port: "
        "pick another with --listen HOST:PORT (port 0 picks a free one))"
    ]
    result = zkop("--listen", "127.0.0.1:http")
    assert result.returncode == 1
    assert (
        result.stderr.strip() == "error: invalid --listen '127.0.0.1:http': the port must be a number from 0 to 65535"
    )
    result = zkop("--token", "short")
    assert result.returncode == 1 and result.stderr.startswith("error: invalid --token")
