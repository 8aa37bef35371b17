"""The kinds the operator watches: StoryRuns, the Stories they name, and the children that carry
the run label.

One table, read by the kopf handlers (what to watch, which label the API server filters on) and
by the relist (what to list, at which path), so the two can never watch different things.
"""

from __future__ import annotations

from dataclasses import dataclass

from runctl.api.wire import GROUP, RUN_LABEL, STEP_RUNS, STORIES, STORY_RUNS, VERSION


@dataclass(frozen=True)
class Watched:
    kind: str
    """The name the cache and the context know the kind by."""
    group: str
    """The API group; empty for the core group (pods)."""
    version: str
    plural: str
    label_selector: str | None
    """Only objects matching it are sent by the API server (children: those of some run)."""

    def path(self, namespace: str | None) -> str:
        """The collection's URL path, in one namespace or in all of them."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        scope = f"/namespaces/{namespace}" if namespace else ""
        return f"{root}{scope}/{self.plural}"


WATCHED = (
    Watched("StoryRun", GROUP, VERSION, STORY_RUNS, None),
    Watched("Story", GROUP, VERSION, STORIES, None),
    Watched("StepRun", GROUP, VERSION, STEP_RUNS, RUN_LABEL),
    Watched("Deployment", "apps", "v1", "deployments", RUN_LABEL),
    Watched("Pod", "", "v1", "pods", RUN_LABEL),
)
