"""How steps become Kubernetes workloads (pods, Deployments, Services), and how those are read
back."""
