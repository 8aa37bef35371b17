"""A structure-aware fuzzer of StoryRuns against the real control plane (`make fuzz`)."""
