"""Use cases: the job lifecycle, one processing attempt, the reconciler."""
