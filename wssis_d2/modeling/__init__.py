"""SOLOv2 and PointWSSIS modeling."""
