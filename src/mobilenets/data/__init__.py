"""Data: image folders, CIFAR and digits, COCO / YOLO / mask readers, preprocessing."""
