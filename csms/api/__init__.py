"""REST API and operator dashboard (FastAPI), served in the CSMS's own event loop."""
