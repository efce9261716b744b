"""The HTTP edge every Chalice app shares: middleware, errors and bodies (edge), the OpenAPI
document made from the bodies' models (openapi; the models are stockpred.contracts), and the one
reader of untrusted JSON (safejson). The only package that knows Chalice.
"""
