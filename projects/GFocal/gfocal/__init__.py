"""GFocal: Generalized Focal Loss detectors for Detectron2."""
