"""The outside world's formats: what labeling and microscopy tools write and read (docs/DATA.md).

One module per format, read and write side by side; formats know COCO dicts, masks and images, never the
pipeline or a model (``tests/test_import_rules.py``). ``wssis_d2.data`` keeps the data contract (mapper,
registration, point rules, COCO masks, validation).

* :mod:`.importers`: clicks from labelme, CVAT, Label Studio, COCO keypoints, CSV -> point-label json;
* :mod:`.label_images`: label images / stacks -> COCO (``datasets/import_masks.py``);
* :mod:`.review_export`: COCO -> labelme json / CVAT XML polygons for review;
* :mod:`.label_image_export`: COCO -> label images (Cellpose / StarDist layouts, napari, Fiji) + objects CSV;
* :mod:`.ctc`: COCO -> a Cell Tracking Challenge RES folder (maskTTT.tif, res_track.txt);
* :mod:`.qupath`: COCO <-> QuPath GeoJSON (pixel-edge polygons);
* :mod:`.labelstudio`: masks <-> Label Studio regions (its own brush RLE, polygons, keypoints), task files;
* shared helpers: :mod:`.flatten` (overlapping masks -> one label image, losses counted),
  :mod:`.edge_polygons` (masks <-> polygons along pixel edges);
* :mod:`.exports`: the name -> writer table (``EXPORT_FORMATS``) and options of ``tools/export_labels.py
  --format`` and ``tools/predict.py --export``.
* :mod:`.cells_psc`: the Cell Tracking Challenge sequence of the real-data benchmark;
* :mod:`.custom_example`: the generated labelme example of docs/DATA.md.
"""
