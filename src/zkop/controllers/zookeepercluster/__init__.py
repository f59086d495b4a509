"""The ZookeeperCluster controller: create, scale, heal and roll ensembles without losing quorum."""
