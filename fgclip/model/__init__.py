"""FG-CLIP model: configuration, modeling, position stretching, checkpoint conversions (data only) and the
vision-tower export.

Importing this package registers FG-CLIP with transformers' Auto classes (see `fgclip.auto`).
"""

from fgclip.auto import register_auto_classes
from fgclip.model.configuration import FGCLIPConfig
from fgclip.model.modeling import FGCLIPModel, FGCLIPOutput, LongTextPositions, validate_boxes
from fgclip.model.positions import stretch_position_table

__all__ = [
    "FGCLIPConfig",
    "FGCLIPModel",
    "FGCLIPOutput",
    "LongTextPositions",
    "stretch_position_table",
    "validate_boxes",
]

register_auto_classes()
