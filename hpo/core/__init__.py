"""What every part of hpo shares: the sweep spec, storage locations, errors, a sweep's stored results,
the search space's translation, the searcher's journal and the statistics. Imports nothing else of hpo,
and neither Ray nor torch."""
