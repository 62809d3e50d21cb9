"""One `APIRouter` per API surface; `orpheus_gateway.app.create_app` assembles them."""
