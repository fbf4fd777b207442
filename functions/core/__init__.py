"""Runtime core shared by the API, the batch runner and the build: store, manifest, integrity, preprocessing."""
