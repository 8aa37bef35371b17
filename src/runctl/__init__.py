"""runctl: a Kubernetes operator that runs StoryRuns (DAGs of steps) with a lifecycle record
that is always true."""
