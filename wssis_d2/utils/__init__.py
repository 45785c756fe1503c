"""Small helpers shared by the stages and entry points: resumable per-rank part files and atomic outputs
(:mod:`.part_files`), overlays of points and masks on images (:mod:`.visualize`), user-facing errors and the
command-line wrapper (:mod:`.errors`), start-of-stage checks of the output folder (:mod:`.preflight`)."""
