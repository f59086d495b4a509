"""The Kubernetes store's throughput and watch latency, next to the raw client library doing the
same work on the same API server.

    python bench/kube_store.py [--count 1000] [--chunk 50] [--watch-updates 200]

It starts its own control plane (etcd, kube-apiserver, kube-controller-manager on free loopback
ports: :class:`zkop.testing.kube.ControlPlane`, binaries built by ``tools/kube/build.sh`` when
missing) and installs zkop's CRDs. For ``--count`` ZookeeperCluster objects it times, in one
namespace each, :class:`zkop.store.kube.KubeStore` and ``kubernetes_asyncio``'s
``CustomObjectsApi`` sending the same JSON bodies:

    create  store: KubeStore.create (POST, then PUT of the status subresource, as for every
                   object that carries a status: zkop apply creates with the kind's empty
                   status; then decodes and validates the answer)
            raw:   create_namespaced_custom_object with the same body (POST), then
                   replace_namespaced_custom_object_status with the same status (PUT)
    get     store: KubeStore.get (GET, decode, validate)
            raw:   get_namespaced_custom_object (GET)
    update  read-modify-write of spec.replicas on both sides:
            store: KubeStore.modify (get; then update, which checks the fencing epoch on the
                   object it just read, then PUT): 1 GET and a PUT
            raw:   get, change, replace with the resourceVersion read (1 GET and a PUT)
    list    store: KubeStore.list of the namespace (decodes and validates every object)
            raw:   list_namespaced_custom_object (JSON only)

Both sides run ``--chunk`` operations at once on a client of their own (the same
configuration: a kubeconfig with the admin's client certificate), phase by phase: the store's
creates, then the raw creates, then the store's gets, ... (the lists alternate), so the two
sides of a ratio run under the same load on a shared machine. Watch latency is the time
from issuing a write (a merge patch of spec.replicas, made by the same writer for both) to its
event: through ``KubeStore.watch`` (a MODIFIED event with the written resourceVersion, decoded
and validated), or through a raw ``kubernetes_asyncio.watch.Watch`` on
list_namespaced_custom_object started from the same list, ``--watch-updates`` writes each.
Everything is warmed up first (``--warm`` objects per side in namespaces of their own).

Writes bench/results/kube_store.json. Ratios are store/raw: for ops/s below 1 means the store
is slower; for latency above 1 means the store is slower.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio import watch as k8s_watch

from common import ratio, summary, write
from zkop.api import Resource, parse_object, resolve_kind, to_dict
from zkop.api.crd import crds
from zkop.store.kube import GROUP, VERSION, KubeStore
from zkop.store.modify import set_spec
from zkop.testing.kube import KUBERNETES_VERSION, ControlPlane, ensure_binaries

ROOT = Path(__file__).resolve().parents[1]
PLURAL = resolve_kind("zkc").plural
LIST_REPS = 3


def make_object(i: int, namespace: str, replicas: int = 3) -> Resource:
    return parse_object(
        {
            "apiVersion": "zkop.io/v1",
            "kind": "ZookeeperCluster",
            "metadata": {
                "name": f"zk-{i:05d}",
                "namespace": namespace,
                "labels": {"bench": "kube-store", "shard": str(i % 8)},
            },
            "spec": {
                "replicas": replicas,
                "config": {
                    "tickTime": 2000,
                    "initLimit": 10,
                    "syncLimit": 5,
                    "additionalConfig": {"snapCount": "100000"},
                },
                "jvm": {"heap": "256Mi"},
                "resources": {"requests": {"cpu": "250m", "memory": "384Mi"}, "limits": {"memory": "512Mi"}},
            },
        }
    )


def body_of(obj: Resource) -> dict[str, Any]:
    """The JSON body KubeStore.create sends for a new object (no status, no server fields)."""
    data = to_dict(obj)
    data.pop("status", None)
    return data


def status_of(obj: Resource) -> dict[str, Any]:
    """The status KubeStore.create writes after the object (the kind's empty status here)."""
    status: dict[str, Any] = to_dict(obj).get("status") or {}
    return status


async def new_client(kubeconfig: Path) -> k8s.ApiClient:
    """A client made the plain kubernetes_asyncio way (the same settings on both sides)."""
    configuration = k8s.Configuration()
    await k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return k8s.ApiClient(configuration)


async def chunked(ops: Sequence[Callable[[], Awaitable[Any]]], chunk: int) -> tuple[float, list[Any]]:
    """Run ``ops`` ``chunk`` at a time; return seconds and results."""
    results: list[Any] = []
    started = time.perf_counter()
    for i in range(0, len(ops), chunk):
        results.extend(await asyncio.gather(*(op() for op in ops[i : i + chunk])))
    return time.perf_counter() - started, results


class StoreSide:
    """The calls through :class:`KubeStore`, on a client of its own."""

    def __init__(self, api: k8s.ApiClient, namespace: str, count: int, chunk: int) -> None:
        self.store, self.namespace, self.count, self.chunk = KubeStore(api), namespace, count, chunk
        self.objects = [make_object(i, namespace) for i in range(count)]

    async def create(self) -> float:
        return (await chunked([lambda o=o: self.store.create(o) for o in self.objects], self.chunk))[0]

    async def get(self) -> float:
        ns = self.namespace
        return (await chunked([lambda o=o: self.store.get("zkc", ns, o.name) for o in self.objects], self.chunk))[0]

    async def update(self) -> float:
        five, ns = set_spec(replicas=5), self.namespace
        ops = [lambda o=o: self.store.modify("zkc", ns, o.name, five) for o in self.objects]
        return (await chunked(ops, self.chunk))[0]

    async def list(self) -> float:
        started = time.perf_counter()
        listed = await self.store.list("zkc", self.namespace)
        elapsed = time.perf_counter() - started
        assert len(listed.items) == self.count, len(listed.items)
        assert all(o.spec.replicas == 5 for o in listed.items)  # type: ignore[attr-defined]
        return elapsed


class RawSide:
    """The same work with ``kubernetes_asyncio``'s CustomObjectsApi, on a client of its own."""

    def __init__(self, api: k8s.ApiClient, namespace: str, count: int, chunk: int) -> None:
        self.custom, self.namespace, self.count, self.chunk = k8s.CustomObjectsApi(api), namespace, count, chunk
        objects = [make_object(i, namespace) for i in range(count)]
        self.bodies = [body_of(o) for o in objects]
        self.names = [b["metadata"]["name"] for b in self.bodies]
        self.status = status_of(objects[0])
        assert self.status, "the store writes a status on create; so does the baseline"

    async def _create(self, body: dict[str, Any]) -> Any:
        c, ns = self.custom, self.namespace
        created = await c.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        name = body["metadata"]["name"]
        return await c.replace_namespaced_custom_object_status(
            GROUP, VERSION, ns, PLURAL, name, {**created, "status": self.status}
        )

    async def _read_modify_write(self, name: str) -> Any:
        c, ns = self.custom, self.namespace
        current = await c.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        current["spec"]["replicas"] = 5
        return await c.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, current)

    async def create(self) -> float:
        return (await chunked([lambda b=b: self._create(b) for b in self.bodies], self.chunk))[0]

    async def get(self) -> float:
        c, ns = self.custom, self.namespace
        ops = [lambda n=n: c.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, n) for n in self.names]
        return (await chunked(ops, self.chunk))[0]

    async def update(self) -> float:
        return (await chunked([lambda n=n: self._read_modify_write(n) for n in self.names], self.chunk))[0]

    async def list(self) -> float:
        started = time.perf_counter()
        listed = await self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        elapsed = time.perf_counter() - started
        assert len(listed["items"]) == self.count, len(listed["items"])
        assert all(o["spec"]["replicas"] == 5 for o in listed["items"])
        return elapsed


async def throughput(kubeconfig: Path, prefix: str, count: int, chunk: int) -> dict[str, dict[str, float]]:
    """Seconds per operation kind for both sides; each phase runs on the store side, then on
    the raw side right after it (and the lists alternate), so both see the same load."""
    store_api, raw_api = await new_client(kubeconfig), await new_client(kubeconfig)
    try:
        sides = {
            "store": StoreSide(store_api, f"{prefix}-store", count, chunk),
            "raw": RawSide(raw_api, f"{prefix}-raw", count, chunk),
        }
        times: dict[str, dict[str, float]] = {"store": {}, "raw": {}}
        for op in ("create", "get", "update"):
            for side, runner in sides.items():
                times[side][op] = await getattr(runner, op)()
        lists: dict[str, list[float]] = {"store": [], "raw": []}
        for _ in range(LIST_REPS):
            for side, runner in sides.items():
                lists[side].append(await runner.list())
        for side in sides:
            times[side]["list"] = statistics.median(lists[side])
    finally:
        await store_api.close()
        await raw_api.close()
    return times


class Writer:
    """Patches spec.replicas of one object and returns the resourceVersion written."""

    def __init__(self, custom: k8s.CustomObjectsApi, namespace: str, name: str) -> None:
        self.custom, self.namespace, self.name = custom, namespace, name

    async def write(self, i: int) -> str:
        patch = {"spec": {"replicas": 5 if i % 2 == 0 else 3}}  # created with 3: every patch changes it
        written = await self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name, patch, _content_type="application/merge-patch+json"
        )
        return str(written["metadata"]["resourceVersion"])


async def timed_writes(writer: Writer, updates: int, arrived: Callable[[str], Awaitable[None]]) -> list[float]:
    latencies = []
    for i in range(updates):
        started = time.perf_counter()
        version = await writer.write(i)
        await asyncio.wait_for(arrived(version), 10)
        latencies.append(time.perf_counter() - started)
    return latencies


async def store_watch_latency(kubeconfig: Path, namespace: str, updates: int) -> list[float]:
    writer_api, api = await new_client(kubeconfig), await new_client(kubeconfig)
    store = KubeStore(api)
    try:
        obj = await store.create(make_object(0, namespace))
        writer = Writer(k8s.CustomObjectsApi(writer_api), namespace, obj.name)
        stream: AsyncIterator[Any] = store.watch("zkc", namespace)
        while (await anext(stream)).type != "SYNCED":
            pass

        async def arrived(version: str) -> None:
            while True:
                event = await anext(stream)
                if event.object is not None and event.object.metadata.resource_version == version:
                    return

        latencies = await timed_writes(writer, updates, arrived)
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await api.close()
        await writer_api.close()
    return latencies


async def raw_watch_latency(kubeconfig: Path, namespace: str, updates: int) -> list[float]:
    writer_api, api = await new_client(kubeconfig), await new_client(kubeconfig)
    custom = k8s.CustomObjectsApi(api)
    try:
        body = body_of(make_object(0, namespace))
        await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        writer = Writer(k8s.CustomObjectsApi(writer_api), namespace, body["metadata"]["name"])
        listed = await custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        watcher = k8s_watch.Watch()
        stream = watcher.stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            resource_version=listed["metadata"]["resourceVersion"],
            allow_watch_bookmarks=True,
        )

        async def arrived(version: str) -> None:
            while True:
                event = await anext(stream)
                if event["raw_object"].get("metadata", {}).get("resourceVersion") == version:
                    return

        latencies = await timed_writes(writer, updates, arrived)
        watcher.stop()
        await watcher.close()
    finally:
        await api.close()
        await writer_api.close()
    return latencies


def install(cp: ControlPlane, namespaces: Sequence[str]) -> None:
    cp.kubectl("apply", "--server-side", "-f", str(ROOT / "deploy" / "crds"))
    for definition in crds():
        cp.kubectl("wait", "--for=condition=Established", f"crd/{definition['metadata']['name']}", "--timeout=60s")
    for ns in namespaces:
        cp.kubectl("create", "namespace", ns)


async def measure(kubeconfig: Path, count: int, chunk: int, warm: int, watch_updates: int) -> dict[str, Any]:
    # Warm up the API server (its CRD handlers, etcd) and both client paths first.
    await throughput(kubeconfig, "warm", warm, chunk)
    await store_watch_latency(kubeconfig, "warm-watch-store", 20)
    await raw_watch_latency(kubeconfig, "warm-watch-raw", 20)
    times = await throughput(kubeconfig, "bench", count, chunk)
    return {
        **times,
        "store_watch": await store_watch_latency(kubeconfig, "bench-watch-store", watch_updates),
        "raw_watch": await raw_watch_latency(kubeconfig, "bench-watch-raw", watch_updates),
    }


def main(count: int, chunk: int, warm: int, watch_updates: int) -> None:
    namespaces = ["warm-store", "warm-raw", "warm-watch-store", "warm-watch-raw"]
    namespaces += ["bench-store", "bench-raw", "bench-watch-store", "bench-watch-raw"]
    with ControlPlane(binaries=ensure_binaries(sys.stderr)) as cp:
        install(cp, namespaces)
        measured = asyncio.run(measure(cp.kubeconfig, count, chunk, warm, watch_updates))

    store_s, raw_s = measured["store"], measured["raw"]
    ops: dict[str, Any] = {}
    for op in ("create", "get", "update", "list"):
        store_ops = count / store_s[op]
        raw_ops = count / raw_s[op]
        ops[op] = {
            "store_ops_per_s": round(store_ops, 1),
            "raw_ops_per_s": round(raw_ops, 1),
            "ratio_store_over_raw": ratio(store_ops, raw_ops),
            "store_s": round(store_s[op], 3),
            "raw_s": round(raw_s[op], 3),
        }
    store_sum = summary([x * 1000 for x in measured["store_watch"]])
    raw_sum = summary([x * 1000 for x in measured["raw_watch"]])
    write(
        "kube_store",
        {
            "kubernetes": KUBERNETES_VERSION,
            "count": count,
            "concurrency": chunk,
            "list_reps": LIST_REPS,
            "ops": ops,
            "note_create": "both sides: POST of the object, then PUT of its status subresource",
            "note_update": "read-modify-write on both sides: store = KubeStore.modify (GET + PUT), raw = GET + PUT",
            "note_list": "list ops/s counts objects listed per second (median of list_reps full lists)",
            "watch_latency_ms": {
                "updates": watch_updates,
                "store": {k: round(v, 3) for k, v in store_sum.items()},
                "raw_watch": {k: round(v, 3) for k, v in raw_sum.items()},
                "ratio_p50_store_over_raw": ratio(store_sum["p50"], raw_sum["p50"]),
                "ratio_p99_store_over_raw": ratio(store_sum["p99"], raw_sum["p99"]),
            },
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="objects per side (default 1000)")
    parser.add_argument("--chunk", type=int, default=50, help="operations in flight at once (default 50)")
    parser.add_argument("--warm", type=int, default=200, help="objects per side for the warm-up (default 200)")
    parser.add_argument("--watch-updates", type=int, default=200, help="writes timed for watch latency (default 200)")
    args = parser.parse_args()
    main(args.count, args.chunk, args.warm, args.watch_updates)
