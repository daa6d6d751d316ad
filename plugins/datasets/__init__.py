"""Built-in dataset plugins: synthetic shapes, COCO, Pascal VOC and image folders.

Registration modules (`shapes`, `coco`, `voc`, `image_folder`) stay light; the `*_dataset`
modules hold the implementations and are imported only when a dataset is built.
"""
