"""Small helpers shared by the stages: resumable per-rank part files and atomic outputs
(:mod:`~wssis_d2.utils.part_files`), overlays of points and masks on images (:mod:`~wssis_d2.utils.visualize`)."""
