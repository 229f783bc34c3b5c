"""Photos from disk to the encoder's input: decoding, EXIF orientation, limits, preprocessing."""
