"""Evaluation and prediction: top-k, mAP, mIoU, the zoo of published numbers, the LiteRT reference."""
