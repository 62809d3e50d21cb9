"""orpheus_gateway."""
