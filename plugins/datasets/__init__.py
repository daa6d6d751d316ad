"""Built-in dataset plugins: synthetic shapes, COCO, Pascal VOC, Ultralytics YOLO and image folders.

Registration modules (`shapes`, `coco`, `voc`, `yolo`, `image_folder`) stay light; the `*_dataset`
modules hold the implementations and are imported only when a dataset is built.
"""
