"""The node agent's view of the Kubernetes API: plain JSON objects over kubernetes_asyncio.

Objects stay ``dict``s (what the API server sends), never generated models: the agent reads
a few fields and writes status patches, and dicts keep both simple. :class:`Informer` is a
small list-then-watch cache (bookmarks, relist after 410 Gone, resume after a dropped
connection) that calls a handler for every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncGenerator, Callable, Mapping
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

log = logging.getLogger("zkop.testing.nodeagent")

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace or "", name)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

WATCH_SECONDS = 240


class ApiError(Exception):
    """A request the API server answered with an error status (or could not be made)."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        self.status = status
        self.body = body
        reason = body
        with contextlib.suppress(ValueError, AttributeError):
            reason = json.loads(body).get("message", body)
        super().__init__(f"{method} {path}: {status} {reason}".strip())


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    m: dict[str, Any] = obj.get("metadata") or {}
    return m


class Kube:
    """JSON requests to one API server, authenticated as a kubeconfig says."""

    def __init__(self, api: Any) -> None:
        self._api = api

    @classmethod
    async def from_kubeconfig(cls, path: str | Path, context: str | None = None) -> Kube:
        configuration = k8s.Configuration()
        await k8s_config.load_kube_config(
            config_file=str(path), context=context, client_configuration=configuration, persist_config=False
        )
        # Several long-lived watches plus status writes and probes of many Pods at once.
        configuration.connection_pool_maxsize = 64
        return cls(k8s.ApiClient(configuration))

    async def close(self) -> None:
        await self._api.close()

    async def _call(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None,
        body: Any,
        content_type: str,
        timeout: Any,
    ) -> Any:
        params = [(k, str(v).lower() if isinstance(v, bool) else v) for k, v in (query or {}).items() if v is not None]
        return await self._api.call_api(
            path,
            method,
            query_params=params,
            header_params={"Accept": JSON, "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = JSON,
        timeout: float = 30.0,
    ) -> Obj:
        """One request; the decoded body. Raises :class:`ApiError` for any status outside 2xx."""
        try:
            resp = await self._call(method, path, query, body, content_type, timeout)
        except (TimeoutError, OSError) as e:
            raise ApiError(0, method, path, f"{type(e).__name__}: {e}") from e
        try:
            data = await resp.read()
        finally:
            resp.release()
        text = data.decode("utf-8", "replace")
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, method, path, text)
        result: Obj = json.loads(text) if text else {}
        return result

    async def get(self, path: str, *, query: Mapping[str, Any] | None = None) -> Obj | None:
        """The object at ``path``, or None when it does not exist."""
        return await self._unless_missing("GET", path, query=query)

    async def create(self, path: str, body: Obj) -> Obj:
        return await self.request("POST", path, body=body)

    async def patch(self, path: str, body: Obj, *, strategic: bool = False) -> Obj:
        return await self.request(
            "PATCH", path, body=body, content_type=STRATEGIC_MERGE_PATCH if strategic else MERGE_PATCH
        )

    async def delete(self, path: str, body: Obj | None = None) -> Obj | None:
        """Delete; None when it was gone already."""
        return await self._unless_missing("DELETE", path, body=body)

    async def _unless_missing(
        self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Obj | None = None
    ) -> Obj | None:
        """:meth:`request`, or None where there is no object at ``path`` (404)."""
        try:
            return await self.request(method, path, query=query, body=body)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    async def watch(self, path: str, query: Mapping[str, Any]) -> AsyncGenerator[Obj, None]:
        """The events of one watch request (``{"type": ..., "object": ...}``) until it ends."""
        q = dict(query) | {"watch": True, "allowWatchBookmarks": True, "timeoutSeconds": WATCH_SECONDS}
        try:
            resp = await self._call("GET", path, q, None, JSON, (10, WATCH_SECONDS + 30))
        except (TimeoutError, OSError) as e:
            raise ApiError(0, "WATCH", path, f"{type(e).__name__}: {e}") from e
        try:
            if resp.status != 200:
                raise ApiError(resp.status, "WATCH", path, (await resp.read()).decode("utf-8", "replace"))
            async for line in resp.content:
                if line.strip():
                    yield json.loads(line)
        finally:
            resp.release()


def api_path(group_version: str, plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """``/api/v1/namespaces/ns/pods/name`` and the like (a group of ``v1`` is the core API)."""
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    if name:
        base += f"/{name}"
    return base


Handler = Callable[[str, Obj], None]


class Informer:
    """A cache of one kind of object kept by list-then-watch; ``handler(type, obj)`` sees every change.

    ``type`` is ADDED, MODIFIED or DELETED. After a relist, objects that went missing while
    the watch was down are reported DELETED. The handler runs in the event loop and must not
    block.
    """

    def __init__(
        self,
        kube: Kube,
        path: str,
        handler: Handler,
        *,
        field_selector: str | None = None,
        label_selector: str | None = None,
    ) -> None:
        self.kube = kube
        self.path = path
        self.handler = handler
        self.query = {"fieldSelector": field_selector, "labelSelector": label_selector}
        self.cache: dict[Key, Obj] = {}
        self.synced = asyncio.Event()

    def _emit(self, kind: str, obj: Obj) -> None:
        try:
            self.handler(kind, obj)
        except Exception:
            log.exception("handler for %s failed on %s %s", self.path, kind, key_of(obj))

    async def _list(self) -> str:
        listed = await self.kube.request("GET", self.path, query=self.query, timeout=60)
        fresh = {key_of(o): o for o in listed.get("items") or []}
        for key in [k for k in self.cache if k not in fresh]:
            self._emit("DELETED", self.cache.pop(key))
        for key, obj in fresh.items():
            old = self.cache.get(key)
            self.cache[key] = obj
            if old is None:
                self._emit("ADDED", obj)
            elif meta(old).get("resourceVersion") != meta(obj).get("resourceVersion"):
                self._emit("MODIFIED", obj)
        self.synced.set()
        version: str = meta(listed).get("resourceVersion") or ""
        return version

    async def run(self) -> None:
        version = ""
        delay = 0.2
        while True:
            try:
                if not version:
                    version = await self._list()
                events = self.kube.watch(self.path, self.query | {"resourceVersion": version})
                async with contextlib.aclosing(events):
                    async for event in events:
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            if obj.get("code") == 410:
                                version = ""  # too old: list again
                            break
                        version = meta(obj).get("resourceVersion") or version
                        if kind == "BOOKMARK":
                            continue
                        key = key_of(obj)
                        if kind == "DELETED":
                            self.cache.pop(key, None)
                        else:
                            self.cache[key] = obj
                        self._emit(str(kind), obj)
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.status == 410:
                    version = ""
                log.debug("watch %s: %s", self.path, e)
                await asyncio.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 5.0)
            except Exception as e:  # dropped connections and the like: resume from the newest version
                log.debug("watch %s: %r", self.path, e)
                await asyncio.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 5.0)
