"""Dataset builders with known noise (synthetic default, CIFAR-10, Flickr8k), written as
img2dataset-style WebDataset shards by one shared writer (``datasets/writer.py``)."""
