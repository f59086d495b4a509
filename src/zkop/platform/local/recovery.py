"""Local-platform steps of rebuilding an ensemble from one survivor (``zkop recover``).

What is on disk per member (``<state>/ensembles/<name>/members/<id>/``): ``zoo.cfg``, whose
``dynamicConfigFile=`` line names the current dynamic file (ZooKeeper writes one per
configuration version, ``zoo.cfg.dynamic.<hex version>``, and may leave a
``zoo.cfg.dynamic.next`` while a reconfig is in flight), and ``data/`` (``myid``,
``version-2/``). The survivor is given an unversioned ``zoo.cfg.dynamic`` that lists only
itself, as a member is at bootstrap: when it leads, ZooKeeper versions that configuration
with its new epoch's zxid (above every earlier version) and writes it out as usual.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zkop.platform.local.ensemble import EnsembleError, LocalEnsemble, MemberStatus
from zkop.zk import fourlw, txnlog
from zkop.zk.config import MemberAddress, render_dynamic

__all__ = ["Isolated", "committed_membership", "disk_state", "isolate_member"]


def disk_state(ens: LocalEnsemble, member_id: int) -> txnlog.DataDirState:
    """The member's last zxid and epochs, read from its data directory (the process may run)."""
    return txnlog.read_data_dir(ens.data_dir(member_id))


async def committed_membership(
    ens: LocalEnsemble, statuses: Sequence[MemberStatus]
) -> tuple[list[MemberAddress], int | None]:
    """The configuration the ensemble committed: asked of a serving member (the leader first),
    else the newest ``zoo.cfg.dynamic.<version>`` on the members' disks, else the initial file."""
    for s in sorted(statuses, key=lambda s: (s.state.mode != "leader", s.id)):
        if s.serving:
            conf = await fourlw.conf(s.address.host, s.address.client_port, timeout=1.0)
            if conf.reachable and conf.members:
                return list(conf.members), conf.config_version
    return ens.stored_membership([s.id for s in statuses])


@dataclass(frozen=True)
class Isolated:
    dynamic_file: Path  # the survivor's new dynamic configuration
    backup: Path  # where its previous configuration files and data were copied


def isolate_member(ens: LocalEnsemble, member_id: int, backup_dir: Path) -> Isolated:
    """Make a stopped member's configuration list only itself.

    First its ``zoo.cfg``, dynamic files and data directory are copied to ``backup_dir`` (a
    new directory: nothing is lost if the rebuild goes wrong); the old dynamic files are then
    moved there, a ``zoo.cfg.dynamic`` naming only the member is written, and ``zoo.cfg`` is
    pointed at it (every other line kept).
    """
    if ens.unit(member_id).running() is not None:
        raise EnsembleError(f"member {member_id} of {ens.name!r} runs; stop it first")
    mdir = ens.member_dir(member_id)
    cfg = ens.config_file(member_id)
    address = next((a for a in ens.addresses() if a.id == member_id), None)
    if address is None or not cfg.is_file():
        raise EnsembleError(f"ensemble {ens.name!r} has no configured member {member_id}")
    backup = backup_dir
    backup.mkdir(parents=True)
    shutil.copytree(ens.data_dir(member_id), backup / "data", symlinks=True)
    shutil.copy2(cfg, backup / cfg.name)
    for old in sorted(mdir.glob("zoo.cfg.dynamic*")):
        shutil.move(str(old), backup / old.name)
    dynamic = mdir / "zoo.cfg.dynamic"
    tmp = dynamic.with_name(".zoo.cfg.dynamic.tmp")
    tmp.write_text(render_dynamic([address]))
    tmp.replace(dynamic)
    lines = cfg.read_text().splitlines()
    kept = [line for line in lines if not line.startswith("dynamicConfigFile=")]
    tmp_cfg = cfg.with_name(".zoo.cfg.tmp")
    tmp_cfg.write_text("\n".join([*kept, f"dynamicConfigFile={dynamic}"]) + "\n")
    tmp_cfg.replace(cfg)
    return Isolated(dynamic, backup)
