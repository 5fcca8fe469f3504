"""FG-CLIP model: configuration, modeling, position stretching and checkpoint conversions."""

from fgclip.model.configuration import FGCLIPConfig
from fgclip.model.modeling import FGCLIPModel, FGCLIPOutput, LongTextPositions, validate_boxes
from fgclip.model.positions import stretch_position_table

__all__ = ["FGCLIPConfig", "FGCLIPModel", "FGCLIPOutput", "LongTextPositions", "stretch_position_table", "validate_boxes"]
