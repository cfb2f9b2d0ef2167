"""Reading a sweep, while it runs or after: ``hpo status``'s tables, the cost, the Optuna dashboard. Imports
nothing of promotion."""
