"""The pure lifecycle core of runctl.

Everything about a run's lifecycle is decided here, from a frozen snapshot and a `now` passed in:
`decide.decide(observed, now)` returns the next StoryRun status and the actions that make it true.
Nothing here reads a clock, logs, or talks to Kubernetes; the operator is the thin shell around it.
"""
