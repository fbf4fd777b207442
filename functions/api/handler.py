"""Lambda entry point: the ASGI app wrapped by Mangum, built once per container at import."""

from __future__ import annotations

from mangum import Mangum

from functions.api.app import create_app
from functions.core.settings import get_settings

_settings = get_settings()
app = create_app(_settings)
if _settings.preload:  # load listed models during init (SnapStart / provisioned concurrency)
    app.state.cache.preload(_settings.preload)
handler = Mangum(app, lifespan="off")
