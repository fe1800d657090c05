"""One inference pipeline behind the CLI, the Python API and every other front end."""

from brushwork.inference.stylizer import Stylizer

__all__ = ["Stylizer"]
