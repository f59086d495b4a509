"""A node agent test double: a Kubernetes node whose Pods run as local processes.

There is no kubelet in zkop's test bed (:mod:`zkop.testing.kube` starts etcd, kube-apiserver and
kube-controller-manager). :class:`NodeAgent` stands in for the node, the scheduler, the kubelet,
the storage provisioner and cluster DNS, against any API server it has a kubeconfig for::

    from zkop.testing.kube import ControlPlane
    from zkop.testing.nodeagent import NodeAgent

    with ControlPlane() as cp, NodeAgent(cp, "/tmp/node", namespaces=["demo"]) as agent:
        cp.kubectl("apply", "-f", "pod.yaml")  # runs as processes of this machine
        print(agent.logs("demo", "hello", "main"))

In pytest, the ``node_agent`` fixture (tests/kubernetes/conftest.py) gives each test an agent
serving its ``kube_namespace``. ``async with NodeAgent(...)`` runs it in the current event loop
instead of a thread of its own.

What it does
------------
**Node.** Registers a Node (``zkop-node`` by default) with the machine's CPUs, memory and disk as
capacity, Ready, and keeps its Lease in ``kube-node-lease`` renewed (status heartbeat every
minute). Stopping the agent (``stop()``, or leaving ``with``) is a graceful node shutdown:
containers get SIGTERM and their grace period (at most ``shutdown_grace``), their Pods end
``Failed`` (reason ``Terminated``) and the Node turns NotReady (or is deleted, with
``delete_node_on_stop``). ``crash()`` is a power cut: SIGKILL, nothing written; a new agent with
the same name and root runs the Pods again, as after a reboot.

**Scheduler.** Binds Pods that have no ``nodeName`` (``schedulerName: default-scheduler``, no
scheduling gates, a ``nodeSelector`` its labels satisfy) through the Binding subresource, only in
the ``namespaces`` it serves (all when None). Several agents may serve one cluster.

**Kubelet.** Runs every container of every Pod bound to its node as a local process: init
containers one after the other to completion (sidecars, ``restartPolicy: Always`` init
containers, keep running), then the containers together. Images map to local commands through
an :class:`ImageTable` (see :mod:`zkop.testing.nodeagent.images`): ``zookeeper`` (any tag) is the
local ZooKeeper distribution behind the image's ``docker-entrypoint.sh`` and ``zkServer.sh``
(``zkop.zk.distribution.locate()`` gives java and the class path; ``SERVER_JVMFLAGS``,
``JVMFLAGS`` and ``ZK_SERVER_HEAP`` are honoured as upstream's script does, and the JVM gets
``-Djdk.net.hosts.file``); an image whose repository ends with ``zkop`` runs this environment's
``zkop`` with the Pod's args; ``busybox``, ``alpine``, ``debian``, ``ubuntu`` and ``bash`` run the
command with the machine's ``/bin/sh`` and tools. ``images=[ImageRule(...)]`` (or
``agent.images.add``) puts the caller's rules first. An image no rule matches waits in
``ErrImagePull`` then ``ImagePullBackOff`` with a message saying so.

Environment: ``env`` and ``envFrom`` with ``$(VAR)`` expansion, ConfigMap and Secret keys, the
downward API (``metadata.name``, ``metadata.namespace``, ``metadata.uid``, labels, annotations,
``spec.nodeName``, ``spec.serviceAccountName``, ``status.podIP``, ``status.hostIP``,
``resourceFieldRef``); also ``POD_IP`` (unless the Pod sets it), ``HOSTNAME``, and
``KUBERNETES_SERVICE_HOST``/``_PORT`` pointing at the API server's real address, so in-cluster
configuration works from a Pod (the ``kube-api-access`` token volume is written too).

Probes (exec, TCP, HTTP; startup, readiness, liveness) with ``initialDelaySeconds``,
``periodSeconds``, ``timeoutSeconds`` and thresholds, against the Pod's address; ``postStart`` and
``preStop`` hooks (exec, HTTP, sleep). Restart policies Always, OnFailure and Never with the
kubelet's crash-loop back-off (first restart at once, then 10 s doubling to 5 min; the
``backoff_scale`` option shrinks it for tests). Deleting a Pod stops its containers gracefully
(preStop, SIGTERM to the process group, ``terminationGracePeriodSeconds`` or the delete's grace,
then SIGKILL), writes the final status and removes the object with a grace-0 delete, as the
kubelet does. Pod status goes through the status subresource: phase, conditions
(PodReadyToStartContainers, Initialized, ContainersReady, Ready, readiness gates), container and
init container statuses (ready, started, restartCount, waiting/running/terminated with exit codes
and reasons, lastState), podIP, hostIP, startTime. Events (Scheduled, Created, Started, Killing,
BackOff, Unhealthy, FailedMount, ProvisioningSucceeded, ...) are recorded as core/v1 Events.
``agent.logs()``, ``agent.exec()`` and ``agent.pids()`` stand in for ``kubectl logs``/``exec``.

**Volumes** (:mod:`zkop.testing.nodeagent.volumes`): ConfigMap, Secret, downward API and
projected volumes as files (``items``, ``defaultMode``, modes; refreshed while the Pod runs),
``emptyDir`` as a directory, ``hostPath``, and PersistentVolumeClaims: the provisioner double
(:mod:`zkop.testing.nodeagent.provisioner`) registers the StorageClass ``zkop-node-agent`` (the
default class when the cluster has none), creates a ``hostPath`` PersistentVolume under the
agent's root for each claim, which kube-controller-manager binds; the directory outlives the Pod
and goes with the claim (``reclaimPolicy: Delete``; ``Retain`` keeps it).

**Isolation.** As root, with util-linux ``unshare`` (the default ``isolation="auto"`` checks),
each container runs in a mount and UTS namespace of its own: its volumes are bind-mounted at
their real ``mountPath`` (read-only where Kubernetes mounts them so), the Pod's hosts file is
``/etc/hosts``, its hostname is the Pod's, and the directories an image has of its own (the
zookeeper image's ``/conf``, ``/data``, ``/datalog``, ``/logs``) are fresh per container run. Pod
specs stay exactly what a real cluster runs. Mount points missing on the machine are created
there (empty, and left in place). Without root (``isolation="none"``) nothing is mounted: each
container's volumes are symlinks under a directory of its own given as ``ZKOP_POD_ROOT``, and a
program must prefix absolute paths itself; the zookeeper image's scripts do (for the config file
and the ``dataDir``/``dataLogDir``/``dynamicConfigFile`` in it, when the path does not exist as
given); other programs, zkop included, do not.

**Networking** (:mod:`zkop.testing.nodeagent.network`). Each Pod gets a loopback address of its
own, 127.0.0.N, as ``status.podIP`` (``hostIP`` is 127.0.0.1), allocated machine-wide (file locks,
so agents of parallel test runs never share one) and reused only after the Pod is gone. A small
``LD_PRELOAD`` library (compiled once with the machine's C compiler) turns a bind to the wildcard
address into a bind to the Pod's address, so every Pod listens on the standard ports: three
ZooKeeper Pods all serve 2181. In a Pod, ``localhost`` resolves to the Pod's address (127.0.0.1 is
still the machine's).

**Cluster DNS** is a hosts file, rewritten as Pods and Services change: ``<svc>.<ns>.svc.cluster.local``
(and ``<svc>.<ns>.svc``, ``<svc>.<ns>``) for Services with a selector: the addresses of the Pods
selected that are ready (all of them with ``publishNotReadyAddresses``); and
``<hostname>.<subdomain>.<ns>.svc.cluster.local`` for Pods with ``hostname`` and ``subdomain``
when a headless Service of that name selects them (same readiness rule), as real cluster DNS
answers. EndpointSlices are not read: the API server refuses loopback endpoint addresses, so the
endpoints are the selected Pods. Each Pod's own file (its ``/etc/hosts``, and ``ZKOP_HOSTS_FILE``
in its environment) also has the names relative to its namespace (``<svc>``,
``<hostname>.<subdomain>``), as its DNS search path would. The cluster-wide file is
``agent.hosts_file``. For code outside Pods: :func:`resolve` (``resolve(name)`` reads
``ZKOP_HOSTS_FILE``, or the file given) and :func:`use_hosts_file`, a context manager that makes
this process's ``socket.getaddrinfo`` (kazoo, asyncio) consult the file first.

What it does not emulate
------------------------
Scheduling constraints (affinity, taints and tolerations, resource requests, topology spread;
only ``nodeSelector`` is checked); resource limits (nothing is limited or OOM-killed); real
networking (ClusterIPs are allocated but not routed, there is no kube-proxy: a ClusterIP
Service's name resolves to its ready Pods' addresses instead, so its port must equal the
targetPort; no NetworkPolicy; no hostPort or hostNetwork distinction); real DNS (a hosts file:
no SRV records, no ExternalName, no Pod A records by dashed address; the JVM and this process's
resolver read it, other programs only through ``/etc/hosts`` with mount isolation); storage
beyond the double (no other provisioners, no WaitForFirstConsumer, no capacity or access-mode
enforcement, no snapshots or expansion); node failure other than stopping or crashing the agent;
container isolation (processes share the machine's users, PIDs, network and, outside their
mounts, its filesystem; writes to unmounted paths land on the machine); image pulls (images are
names in a table); ``kubectl logs``/``exec``/``port-forward`` (no kubelet API; use the agent's
methods); ``activeDeadlineSeconds``, ephemeral containers, in-place resize and Pod-level
security settings.
"""

from zkop.testing.nodeagent.agent import NodeAgent, NodeAgentError
from zkop.testing.nodeagent.images import ImageRef, ImageRule, ImageTable
from zkop.testing.nodeagent.network import HOSTS_FILE_ENV, AddressPool, resolve, use_hosts_file
from zkop.testing.nodeagent.pods import BackOff

__all__ = [
    "HOSTS_FILE_ENV",
    "AddressPool",
    "BackOff",
    "ImageRef",
    "ImageRule",
    "ImageTable",
    "NodeAgent",
    "NodeAgentError",
    "resolve",
    "use_hosts_file",
]
