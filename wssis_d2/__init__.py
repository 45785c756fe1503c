"""wssis-d2: PointWSSIS on detectron2."""
