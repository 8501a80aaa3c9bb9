"""``seqlab serve``: a FastAPI app with the G2P model, a JSON API and a web page (see :mod:`.app`)."""

from .app import EXAMPLES, BackgroundServer, ServeConfig, create_app, pronounce_with_attention, serve

__all__ = ["EXAMPLES", "BackgroundServer", "ServeConfig", "create_app", "pronounce_with_attention", "serve"]
