"""Small helpers shared by every entry point: user-facing errors and the command-line wrapper
(:mod:`.errors`), start-of-stage checks of the output folder (:mod:`.preflight`)."""
