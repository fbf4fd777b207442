"""Lambda entry point: the fast ASGI front wrapped by Mangum, built once per container at import.

The FastAPI app behind it (OpenAPI, listings) is built only when such a route is first asked for. With capture
on, the handler only queues its records: they are written once Lambda's runtime has posted the response. Shadow
comparisons run then too (``functions.core.shadow``, set up by the first request that has one).
"""

from __future__ import annotations

import dataclasses
import os

from mangum import Mangum

from functions.api import snapstart
from functions.api.front import create_front
from functions.core import capture
from functions.core.settings import ENV_AUTH, get_settings

# One invocation carries one request, so no two requests could ever join a session run: skip the batcher's hop.
_settings = dataclasses.replace(get_settings(), max_batch_rows=1)
app = create_front(_settings)
if os.environ.get(ENV_AUTH):  # an apiKey stage: the authorizer's verdict, then scope, limits and metering here
    from functions.consumers.gate import api_key_auth, deployed_gate

    if api_key_auth():
        app = deployed_gate(app)  # type: ignore[assignment]
if _settings.preload:  # load listed models during init (SnapStart / provisioned concurrency)
    app.cache.preload(_settings.preload)
snapstart.register(app)  # only in Lambda: warm-up before the snapshot, fresh clients and aliases after a restore
handler = Mangum(app, lifespan="off")
capture.start_after_response()  # in Lambda with capture on: records are written after the runtime's post
