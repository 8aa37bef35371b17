"""A real local Kubernetes control plane on loopback, for tests, demos and benchmarks.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as child processes
(built once from Go modules by `hack/controlplane-build.sh`). kwok plays the kubelet for a few
fake nodes, so pods are scheduled, run and exit as their `sim.runctl.dev/*` annotations say.
Nothing here mocks the API server: clients talk to the real thing over TLS.
"""

from runctl.devcluster.cluster import ControlPlane, build_binaries

__all__ = ["ControlPlane", "build_binaries"]
