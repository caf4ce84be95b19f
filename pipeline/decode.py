"""DecodeExamples: image bytes -> uint8 tensor, caption bytes -> text (task retrieval) or
``KEY.cls`` -> class index (task classification, ``num_classes`` > 0); bad records -> dead."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics
from learnsieve.pipeline.read import DEAD

from learnsieve.core.decode import decode_labelled, decode_sample
from learnsieve.core.records import DeadLetter


class DecodeFn(beam.DoFn):
    def __init__(self, image_size: int, max_pixels: int, max_caption_bytes: int, num_classes: int = 0):
        self.args = (image_size, max_pixels, max_caption_bytes)
        self.num_classes = num_classes
        self.decoded = Metrics.counter("decode", "decoded")
        self.rejected = Metrics.counter("decode", "rejected")

    def process(self, sample):
        if self.num_classes:
            out = decode_labelled(sample, self.args[0], self.args[1], self.num_classes)
        else:
            out = decode_sample(sample, *self.args)
        if isinstance(out, DeadLetter):
            self.rejected.inc()
            yield beam.pvalue.TaggedOutput(DEAD, out)
        else:
            self.decoded.inc()
            yield out


class DecodeExamples(beam.PTransform):
    def __init__(self, image_size: int, max_pixels: int, max_caption_bytes: int, num_classes: int = 0):
        super().__init__()
        self.fn = DecodeFn(image_size, max_pixels, max_caption_bytes, num_classes)

    def expand(self, samples):
        return samples | "Decode" >> beam.ParDo(self.fn).with_outputs(DEAD, main="decoded")
