"""Total Selfie (thesis 000, Ch. 3): selfie-conditioned Paint-by-Example inpainting with a modified ControlNet."""
from lightning_modules.total_selfie.module import TotalSelfieModule

__all__ = ["TotalSelfieModule"]
