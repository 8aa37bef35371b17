"""How steps become Kubernetes workloads (Jobs, Deployments, Services), and how those are read
back."""
