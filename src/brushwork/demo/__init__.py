"""The built-in example: a procedural painting style learnt from unpaired images, no data needed."""
