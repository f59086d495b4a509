"""ZookeeperZnode without processes: paths, quotas, the kind."""

from __future__ import annotations

import pytest

from zkop.api import ZookeeperZnode, parse_object, resolve_kind
from zkop.api.errors import ResourceValidationError
from zkop.controllers.zookeeperznode import credentials_name, paths_overlap, tenant_user
from zkop.zk.quota import Limits, limits_path, stats_path


def _znode(path: str, **spec: object) -> ZookeeperZnode:
    obj = parse_object(
        {
            "apiVersion": "zkop.io/v1",
            "kind": "ZookeeperZnode",
            "metadata": {"name": "orders"},
            "spec": {"clusterRef": {"name": "zk"}, "path": path, **spec},
        }
    )
    assert isinstance(obj, ZookeeperZnode)
    return obj


def test_the_kind() -> None:
    assert resolve_kind("znode").kind == "ZookeeperZnode"
    obj = _znode("/apps/orders", quota={"znodes": 10, "bytes": "1Mi"})
    assert obj.spec.reclaim_policy == "Retain" and obj.spec.quota is not None
    assert obj.spec.quota.bytes is not None and obj.spec.quota.bytes.bytes == 1024 * 1024


@pytest.mark.parametrize(
    "path", ["apps", "/", "/apps/", "//a", "/a//b", "/a/./b", "/a/../b", "/zookeeper", "/zookeeper/quota", "/a b"]
)
def test_bad_paths_are_refused_with_the_field(path: str) -> None:
    with pytest.raises(ResourceValidationError, match=r"spec\.path"):
        _znode(path)


def test_overlap() -> None:
    assert paths_overlap("/a", "/a") and paths_overlap("/a", "/a/b") and paths_overlap("/a/b", "/a")
    assert not paths_overlap("/a", "/ab") and not paths_overlap("/a/b", "/a/c")


def test_quota_data_is_zookeepers() -> None:
    assert Limits(10, None).encode() == b"count=10,bytes=-1"
    assert Limits(None, 100, hard=True).encode() == b"count=-1,bytes=100;countHardLimit=-1;byteHardLimit=100"
    for limits in (Limits(10, None), Limits(3, 7, hard=True), Limits()):
        assert Limits.decode(limits.encode()) == limits
    assert limits_path("/a/b") == "/zookeeper/quota/a/b/zookeeper_limits"
    assert stats_path("/a") == "/zookeeper/quota/a/zookeeper_stats"


def test_names() -> None:
    assert tenant_user("default", "orders") == "znode/default/orders"
    assert credentials_name("orders") == "zkop-znode-orders"
