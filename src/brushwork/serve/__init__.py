"""The HTTP service and web page behind ``brushwork serve`` (needs the ``serve`` extra).

:func:`create_app` takes already-loaded pipelines (:class:`brushwork.inference.Stylizer`, or
anything with ``__call__(PIL image) -> PIL image`` and ``describe()``) and returns a FastAPI app;
see :mod:`brushwork.serve.app` for the endpoints and docs/deploy.md for the limits and the
concurrency model.
"""

from brushwork.serve.app import ServeConfig, create_app
from brushwork.serve.imaging import Pipeline

__all__ = ["Pipeline", "ServeConfig", "create_app"]
