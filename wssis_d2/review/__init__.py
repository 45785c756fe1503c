"""The clicks as free quality control (docs/PIPELINE.md "Review"): per click flags and a risk that its mask
is wrong, per image orphans (confident click-free detections without a click: likely missed clicks) and a
review rank. Pure functions in ``signals`` / ``risk`` / ``review`` / ``measure``; files in ``report``; the
pipeline stage in ``stage`` (imported on its own: it needs the pipeline)."""
from .measure import efficiency, score_review
from .review import review_dataset
from .risk import FLAGS, ReviewSettings
from .signals import area_stats, click_signals, find_orphans

__all__ = ["FLAGS", "ReviewSettings", "area_stats", "click_signals", "efficiency", "find_orphans", "review_dataset",
           "score_review"]
