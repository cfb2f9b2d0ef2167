"""Running a sweep: data and baselines prepared once, the Tune run launched on this machine or submitted to a
Ray cluster, every trial tracked in W&B."""
