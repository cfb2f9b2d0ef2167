"""The adapter around Ray Tune: the only package of hpo that imports ``ray`` or names a private attribute of
Ray, Optuna or W&B. It holds the searcher and scheduler subclasses, the callbacks a Tune run carries (the
console, the janitor, the W&B callback, the result loggers) and the settle step before a restore; the other
packages see ``Location`` and ``RoundReport``, never Tune's trial objects."""
