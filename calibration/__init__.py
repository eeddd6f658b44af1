"""INT8 calibration and score calibration (filled in by the export issue)."""
