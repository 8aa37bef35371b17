"""The imperative shell: kopf handlers, the cache, the work queue, and applying decisions."""
