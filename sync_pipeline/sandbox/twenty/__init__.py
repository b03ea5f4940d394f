"""Local stand-in for the Twenty CRM REST API and webhooks (sandbox and tests only).

Run ``python -m sync_pipeline.sandbox.twenty --help``; from Python use
:func:`sync_pipeline.sandbox.twenty.server.run_standin` or
:func:`sync_pipeline.sandbox.twenty.app.create_app`.
"""
