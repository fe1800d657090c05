"""One inference pipeline behind the CLI, the Python API and every other front end."""

from brushwork.inference.pipeline import PIPELINES, ImagePipeline, load_pipeline
from brushwork.inference.stylizer import Stylizer

__all__ = ["PIPELINES", "ImagePipeline", "Stylizer", "load_pipeline"]
