"""Backups of ZookeeperClusters: a consistent copy of a serving member's latest snapshot and the
transaction logs after it (:mod:`.create`), kept in a :class:`~.target.BackupTarget` with a
manifest of checksums (:mod:`.manifest`), verified and restored into a new cluster
(:mod:`.restore`), taken on a schedule with retention (:mod:`.schedule`)."""
