"""The outside world's formats: what labeling and microscopy tools write and read (docs/DATA.md).

One module per format, read and write side by side; formats know COCO dicts, masks and images, never the
pipeline or a model (``tests/test_import_rules.py``). ``wssis_d2.data`` keeps the data contract (mapper,
registration, point rules, COCO masks, validation).

* :mod:`.importers`: clicks from labelme, CVAT, Label Studio, COCO keypoints, CSV -> point-label json;
* :mod:`.label_images`: label images / stacks -> COCO (``datasets/import_masks.py``);
* :mod:`.review_export`: COCO -> labelme json / CVAT XML polygons for review;
* :mod:`.labelstudio`: masks <-> Label Studio regions (its own brush RLE, polygons, keypoints), task files;
* :mod:`.edge_polygons`: masks <-> polygons along pixel edges (QuPath, Label Studio polygons);
* :mod:`.cells_psc`: the Cell Tracking Challenge sequence of the real-data benchmark;
* :mod:`.custom_example`: the generated labelme example of docs/DATA.md.
"""
