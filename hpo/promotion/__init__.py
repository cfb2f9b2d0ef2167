"""Promoting a sweep's winner: finalists over seeds, the retrain with the trials' own training code, the
gates (test metrics, the baseline, the model already on the Hub), the model card, the Hub upload and its
verification."""
