"""The proxy's routes, one module each, with the OpenAPI helpers and error handlers they share."""
