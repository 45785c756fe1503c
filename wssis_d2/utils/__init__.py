"""Small helpers shared by the stages: resumable per-rank part files and atomic outputs."""
